"""``hftransfer train ... --accelerate_config NAME|PATH``: the same run, started by ``accelerate launch``.

hftransfer has no distributed code of its own: this module only turns the command into
``accelerate launch --config_file CONFIG [launcher flags] -m hftransfer.train [training flags]`` after
checking, in this one process, everything that can be checked before N processes start (the training
flags, the config file, the hardware the config needs). It then runs accelerate as a child process and
passes its output through; a user error in the processes ends the command as the same one line and exit
code 2 as everywhere else, not as the launcher's traceback of the failed processes.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from hftransfer.config.device import FORCE_CPU_ENV
from hftransfer.errors import INTERNAL_ERROR_EXIT, INTERNAL_PREFIX, PREFIX, USER_ERROR_EXIT, HftransferError
from hftransfer.files.readers import yaml_mapping
from hftransfer.training.parse import parse_config

CONFIG_FLAG_NAMES = ("--accelerate_config", "--accelerate-config")
# accelerate launch's own flags that hftransfer forwards: processes and the multi-node rendezvous.
LAUNCHER_FLAGS = ("num_processes", "num_machines", "machine_rank", "main_process_ip", "main_process_port")
CPU_TEMPLATE = "cpu"
GPU_KINDS = {"MULTI_GPU", "FSDP", "DEEPSPEED"}  # accelerate distributed types that start one process per GPU
SHARDED_KINDS = {"FSDP", "DEEPSPEED"}


class LaunchError(HftransferError):
    """An accelerate config or launcher flag that cannot work; the message says why and what to use."""


@dataclass
class LaunchPlan:
    command: list[str]
    env: dict[str, str]
    config_file: Path


def templates_root() -> Path:
    return Path(str(resources.files("hftransfer") / "accelerate_configs"))


def shipped_templates() -> list[tuple[str, Path, str]]:
    """(name, path, description) of each shipped accelerate config; the description is its first comment."""
    found = []
    for path in sorted(templates_root().glob("*.yaml")):
        first = next((line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")), "")
        found.append((path.stem, path, first.lstrip("# ").strip()))
    return found


def resolve_config_file(name_or_path: str) -> Path:
    """A shipped template's name (``multi_gpu``) or the path of an accelerate config YAML."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = {name: p for name, p, _ in shipped_templates()}
    if name_or_path in shipped:
        return shipped[name_or_path]
    raise LaunchError(
        f"accelerate config {name_or_path!r} is neither a file nor a shipped template; "
        f"templates: {', '.join(shipped)} (see `hftransfer accelerate-configs`)"
    )


def wants_launch(argv: list[str]) -> bool:
    """True when ``hftransfer train``'s arguments include an accelerate config or a launcher flag."""
    names = {arg.split("=")[0] for arg in argv if arg.startswith("--")}
    return bool(names & set(CONFIG_FLAG_NAMES)) or any(n[2:].replace("-", "_") in LAUNCHER_FLAGS for n in names)


def split_launch_args(argv: list[str]) -> tuple[str | None, dict[str, str], list[str]]:
    """(accelerate config, launcher flags, the training flags) from ``hftransfer train``'s arguments."""
    config, launcher, rest, i = None, {}, [], 0
    while i < len(argv):
        arg = argv[i]
        name, _, inline = arg.partition("=")
        key = name[2:].replace("-", "_") if name.startswith("--") else None
        if name in CONFIG_FLAG_NAMES or key in LAUNCHER_FLAGS:
            if inline:
                value = inline
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value = argv[i + 1]
                i += 1
            else:
                raise LaunchError(f"{name} needs a value")
            if name in CONFIG_FLAG_NAMES:
                config = value
            else:
                launcher[key] = value
        else:
            rest.append(arg)
        i += 1
    if launcher and config is None:
        raise LaunchError(
            f"--{next(iter(launcher))} is a launcher flag: give --accelerate_config NAME|PATH with it "
            "(or start the run with `accelerate launch`)"
        )
    return config, launcher, rest


def plan_launch(config_name: str, launcher: dict[str, str], train_argv: list[str]) -> LaunchPlan:
    """Check the launch and build the ``accelerate launch`` command and its environment."""
    import torch

    if os.environ.get("LOCAL_RANK") is not None or os.environ.get("ACCELERATE_PROCESS_INDEX") is not None:
        raise LaunchError(
            "--accelerate_config was given inside a process that accelerate (or torchrun) already "
            "started; drop it, or start hftransfer train directly"
        )
    config_file = resolve_config_file(config_name)
    settings = yaml_mapping(config_file, "--accelerate_config", "accelerate config")
    on_cpu = _is_template(config_file, CPU_TEMPLATE) or bool(settings.get("use_cpu"))
    kind = str(settings.get("distributed_type", "NO")).upper()
    gpu_processes = kind in GPU_KINDS and not on_cpu
    if (gpu_processes or _is_template(config_file, "single_gpu")) and not torch.cuda.is_available():
        raise LaunchError(
            f"accelerate config {config_name!r} ({kind}) runs on CUDA GPUs and this machine has none; "
            f"use --accelerate_config {CPU_TEMPLATE} for several CPU processes, or no accelerate config"
        )
    if on_cpu and kind in SHARDED_KINDS:
        # accelerate's AcceleratorState switches to FSDP or DeepSpeed only from GPU-family types: CPU processes
        # are MULTI_CPU and would train unsharded, as plain data parallel, without a word.
        raise LaunchError(
            f"accelerate config {config_name!r} asks for {kind} on CPU processes, which accelerate "
            f"does not shard (they would train as plain data-parallel copies); {kind} needs GPUs. "
            f"On CPUs use --accelerate_config {CPU_TEMPLATE}"
        )
    if kind == "DEEPSPEED" and importlib.util.find_spec("deepspeed") is None:
        raise LaunchError(
            f"accelerate config {config_name!r} uses DeepSpeed, which is not installed: pip install deepspeed"
        )
    for key in ("num_processes", "num_machines", "machine_rank", "main_process_port"):
        if key in launcher and not launcher[key].isdigit():
            raise LaunchError(f"--{key} must be a whole number, got {launcher[key]!r}")
    if gpu_processes and "num_processes" not in launcher:
        launcher["num_processes"] = str(torch.cuda.device_count() * int(launcher.get("num_machines", 1)))

    env = dict(os.environ)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file)]
    if on_cpu:
        env[FORCE_CPU_ENV] = "1"
        # num_processes counts every machine's processes; the cores to share are this machine's
        processes = int(launcher.get("num_processes", settings.get("num_processes", 1)))
        machines = int(launcher.get("num_machines", settings.get("num_machines", 1)))
        here = max(1, processes // max(1, machines))
        command += ["--num_cpu_threads_per_process", str(max(1, (os.cpu_count() or 1) // here))]
    for key, value in launcher.items():
        command += [f"--{key}", value]
    command += ["-m", "hftransfer.train", *train_argv]
    return LaunchPlan(command, env, config_file)


def _is_template(config_file: Path, name: str) -> bool:
    return config_file.resolve() == (templates_root() / f"{name}.yaml").resolve()


def check_training_flags(train_argv: list[str], on_cpu: bool) -> None:
    """Parse the training flags here, so bad input fails once and now, not in every launched process (on the CPU
    when the processes will run there, so the precision checks are the CPU's)."""
    parse_config([*train_argv, "--use_cpu", "true"] if on_cpu else train_argv)


def launch(argv: list[str]) -> int:
    """Run ``accelerate launch`` of the run as a child process; returns its exit code (2 for a user error)."""
    config_name, launcher, train_argv = split_launch_args(argv)
    plan = plan_launch(config_name, launcher, train_argv)
    check_training_flags(train_argv, plan.env.get(FORCE_CPU_ENV) == "1")
    print("launching: " + " ".join(plan.command[1:]), file=sys.stderr, flush=True)
    return supervise(plan.command, plan.env)


def supervise(command: list[str], env: dict[str, str]) -> int:
    """Run ``command``, passing its stderr through as it comes (progress bars included).

    Once a process reports a user error (a line starting ``hftransfer: error:``) or an internal one, the rest of
    stderr is the launcher's report of processes that failed or were stopped because of it: it is dropped, and the
    error is printed once, with exit code 2 (1 for an internal error). SIGTERM (a scheduler's pre-emption) is passed
    on to the launcher; Ctrl-C
    reaches the whole process group by itself.
    """
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    previous = signal.signal(signal.SIGTERM, lambda *_: process.terminate())
    markers, pending, error = (PREFIX.encode(), INTERNAL_PREFIX.encode()), b"", None
    longest = max(len(m) for m in markers)
    try:
        for chunk in iter(lambda: os.read(process.stderr.fileno(), 1 << 16), b""):
            if error is not None:
                continue
            data = pending + chunk
            at = min((i for i in (data.find(m) for m in markers) if i >= 0), default=-1)
            if at >= 0:
                sys.stderr.buffer.write(data[:at])
                error, pending = data[at:], b""
            else:
                keep = max(len(data) - longest + 1, 0)  # a marker may be cut between two chunks
                sys.stderr.buffer.write(data[:keep])
                pending = data[keep:]
            sys.stderr.buffer.flush()
        code = process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if process.poll() is None:
            process.wait()
    if error is None:
        sys.stderr.buffer.write(pending)
        return code
    print(error.split(b"\n")[0].decode(errors="replace"), file=sys.stderr, flush=True)
    return INTERNAL_ERROR_EXIT if error.startswith(INTERNAL_PREFIX.encode()) else USER_ERROR_EXIT
