"""Multi-process runs through accelerate (2 CPU processes, gloo) and the --accelerate_config launcher.

The eval sets have sizes that 2 processes cannot split evenly (21 texts, 7 images): accelerate pads the last
batch of one process with repeated examples, and the metrics must still count every example exactly once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, make_image, sentiment_rows, subprocess_env, write_rows

from hftransfer.artifacts.evaluate import evaluate_run
from hftransfer.cli.launch import LaunchError, plan_launch, resolve_config_file, shipped_templates, split_launch_args

pytestmark = pytest.mark.e2e  # end to end: trains or starts processes, seconds each

SUMMARY_TITLE = "hftransfer · "


def _run(command: list[str], timeout: int = 600, **env) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(**env), timeout=timeout, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


def _assert_matches_single_process_eval(out: Path, splits: dict[str, int]) -> None:
    """The 2-process run's report equals a 1-process evaluation of its saved model, split by split."""
    trained = json.loads((out / "eval_report.json").read_text())
    results = json.loads((out / "all_results.json").read_text())
    for split, size in splits.items():
        single, _ = evaluate_run(out, split=split, output_dir=str(out / f"single-{split}"), batch_size=5)
        prefix = "eval" if split == "validation" else split
        assert trained[split]["num_examples"] == single["num_examples"] == size
        assert trained[split]["confusion_matrix"] == single["confusion_matrix"]
        assert sum(map(sum, trained[split]["confusion_matrix"]["matrix"])) == size  # each example once
        for metric in ("accuracy", "f1_macro", "precision_macro", "recall_macro", "f1_weighted"):
            assert trained[split]["summary"][metric] == pytest.approx(single["summary"][metric], abs=1e-9)
            assert results[f"{prefix}_{metric}"] == pytest.approx(single["summary"][metric], abs=1e-9)
        # the loss is a mean of per-batch means, and the batches differ between 1 and 2 processes
        assert results[f"{prefix}_loss"] == pytest.approx(single["summary"]["loss"], rel=0.02)


def _assert_written_once(out: Path, stdout: str) -> None:
    assert stdout.count(SUMMARY_TITLE) == 1  # only rank 0 prints the summary
    for name in ("model.safetensors", "config.json", "README.md", "eval_report.json", "hftransfer_config.yaml"):
        assert (out / name).is_file(), name
    assert not (out / ".model.partial").exists()


def test_accelerate_launch_two_processes_text(tiny_bert, tmp_path):
    files = {
        "train": write_rows(tmp_path / "train.csv", sentiment_rows(64, seed=1)),
        "validation": write_rows(tmp_path / "dev.csv", sentiment_rows(21, seed=2)),
        "test": write_rows(tmp_path / "test.csv", sentiment_rows(15, seed=3)),
    }
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "model": str(tiny_bert),
                "train_file": str(files["train"]),
                "validation_file": str(files["validation"]),
                "test_file": str(files["test"]),
                "num_train_epochs": 2,
                "per_device_train_batch_size": 8,
                "per_device_eval_batch_size": 4,
                "learning_rate": 1e-3,
                "disable_tqdm": True,
            }
        )
    )
    out = tmp_path / "out"
    cpu_config = resolve_config_file("cpu")
    done = _run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(cpu_config),
            "--num_processes",
            "2",
            "--num_cpu_threads_per_process",
            "1",
            "-m",
            "hftransfer.train",
            "--config",
            str(recipe),
            "--output_dir",
            str(out),
        ],
        HF_DATASETS_CACHE=str(tmp_path / "cache-2"),
    )
    # preprocessing ran once: rank 1 reused rank 0's cached datasets (a second fingerprint would add files)
    _run(
        [
            sys.executable,
            "-m",
            "hftransfer.train",
            "--config",
            str(recipe),
            "--output_dir",
            str(tmp_path / "one"),
            "--max_steps",
            "1",
        ],
        HF_DATASETS_CACHE=str(tmp_path / "cache-1"),
    )
    cached = [sorted(p.name for p in (tmp_path / f"cache-{n}").rglob("cache-*.arrow")) for n in (1, 2)]
    assert len(cached[0]) >= 3 and len(cached[1]) == len(cached[0])
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2 * 64 // (2 * 8)  # 2 epochs of 4 steps: the batch is split over 2 processes
    _assert_written_once(out, done.stdout)
    _assert_matches_single_process_eval(out, {"validation": 21, "test": 15})


def test_two_machines_train_as_one_run(tiny_bert, tmp_path):
    """Two "machines" on this host (one CPU process each, a static rendezvous at 127.0.0.1, as on a cluster with a
    shared filesystem): one 2-process run, the same steps as 2 processes on one machine, the same metrics as one
    process. Each machine has its own datasets cache, as separate hosts do."""
    import socket

    files = {
        "train": write_rows(tmp_path / "train.csv", sentiment_rows(64, seed=1)),
        "validation": write_rows(tmp_path / "dev.csv", sentiment_rows(21, seed=2)),
    }
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "hftransfer.cli",
        "train",
        "--accelerate_config",
        "cpu",
        "--num_processes",
        "2",
        "--num_machines",
        "2",
        "--main_process_ip",
        "127.0.0.1",
        "--main_process_port",
        str(port),
        "--model",
        str(tiny_bert),
        "--train_file",
        str(files["train"]),
        "--validation_file",
        str(files["validation"]),
        "--num_train_epochs",
        "2",
        "--per_device_train_batch_size",
        "8",
        "--per_device_eval_batch_size",
        "4",
        "--learning_rate",
        "1e-3",
        "--disable_tqdm",
        "true",
        "--output_dir",
        str(out),
    ]
    machines = [
        subprocess.Popen(
            [*command, "--machine_rank", str(rank)],
            cwd=REPO,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=subprocess_env(HF_DATASETS_CACHE=str(tmp_path / f"cache-machine{rank}")),
        )
        for rank in (0, 1)
    ]
    try:
        outputs = [machine.communicate(timeout=600) for machine in machines]
    finally:
        for machine in machines:
            machine.kill()
    for machine, (stdout, stderr) in zip(machines, outputs):
        assert machine.returncode == 0, stdout[-2000:] + stderr[-4000:]
    assert "--num_machines 2" in outputs[1][1] and "--num_cpu_threads_per_process" in outputs[1][1]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2 * 64 // (2 * 8)  # one batch of 8 per machine per step
    _assert_written_once(out, outputs[0][0] + outputs[1][0])
    _assert_matches_single_process_eval(out, {"validation": 21})


def test_hftransfer_accelerate_config_launches_two_processes_vision(timm_weights, tmp_path):
    root = tmp_path / "images"
    for colour, name, count in (((220, 30, 30), "red", 10), ((30, 30, 220), "blue", 10)):
        for i in range(count):
            make_image(root / "train" / name / f"{i}.png", colour)
    for colour, name, count in (((220, 30, 30), "red", 4), ((30, 30, 220), "blue", 3)):
        for i in range(count):
            make_image(root / "val" / name / f"{i}.png", colour)
    out = tmp_path / "out"
    done = _run(
        [
            sys.executable,
            "-m",
            "hftransfer.cli",
            "train",
            "--accelerate_config",
            "cpu",
            "--num_processes",
            "2",
            "--task",
            "image-classification",
            "--timm_arch",
            "test_efficientnet",
            "--strategy",
            "full",
            "--weights",
            str(timm_weights),
            "--data_dir",
            str(root),
            "--output_dir",
            str(out),
            "--num_train_epochs",
            "1",
            "--per_device_train_batch_size",
            "4",
            "--per_device_eval_batch_size",
            "2",
            "--disable_tqdm",
            "true",
            "--dataloader_num_workers",
            "0",
        ]
    )
    assert "launching: " in done.stderr and "--num_processes 2" in done.stderr
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 20 // (2 * 4) + 1  # 3 steps: 20 images, 8 per step over 2 processes
    _assert_written_once(out, done.stdout)
    _assert_matches_single_process_eval(out, {"validation": 7})


# --- the launcher, without launching ----------------------------------------------------------------------


def test_shipped_templates_are_valid_accelerate_configs():
    from accelerate.commands.config.config_args import load_config_from_file

    names = {name for name, _, _ in shipped_templates()}
    assert names == {"single_gpu", "multi_gpu", "fsdp", "deepspeed_zero2", "cpu"}
    kinds = {
        name: str(load_config_from_file(str(path)).distributed_type).split(".")[-1]
        for name, path, _ in shipped_templates()
    }
    assert kinds == {
        "single_gpu": "NO",
        "multi_gpu": "MULTI_GPU",
        "fsdp": "FSDP",
        "deepspeed_zero2": "DEEPSPEED",
        "cpu": "MULTI_GPU",
    }


def test_launch_arguments_are_split_from_training_flags():
    config, launcher, rest = split_launch_args(
        [
            "--config",
            "r.yaml",
            "--accelerate-config",
            "multi_gpu",
            "--num_processes=4",
            "--num_machines",
            "2",
            "--machine_rank",
            "1",
            "--main_process_ip",
            "10.0.0.1",
            "--main_process_port",
            "29500",
            "--bf16",
        ]
    )
    assert config == "multi_gpu"
    assert launcher == {
        "num_processes": "4",
        "num_machines": "2",
        "machine_rank": "1",
        "main_process_ip": "10.0.0.1",
        "main_process_port": "29500",
    }
    assert rest == ["--config", "r.yaml", "--bf16"]
    with pytest.raises(LaunchError, match="--num_processes is a launcher flag"):
        split_launch_args(["--num_processes", "2", "--model", "x"])
    with pytest.raises(LaunchError, match="needs a value"):
        split_launch_args(["--accelerate_config"])


def test_cpu_launch_plan_keeps_processes_on_cpu_and_forwards_flags(tmp_path):
    plan = plan_launch("cpu", {"num_processes": "2"}, ["--config", "r.yaml"])
    command = plan.command
    assert command[1:4] == ["-m", "accelerate.commands.launch", "--config_file"]
    assert command[command.index("--num_processes") + 1] == "2"
    assert command[-4:] == ["-m", "hftransfer.train", "--config", "r.yaml"]
    assert plan.env["HFTRANSFER_USE_CPU"] == "1"
    # threads per process share this machine's cores among this machine's processes, not every machine's
    threads = {
        machines: plan_launch("cpu", {"num_processes": "4", "num_machines": machines}, []).command
        for machines in ("1", "2")
    }
    cores = os.cpu_count() or 1
    for machines, expected in (("1", max(1, cores // 4)), ("2", max(1, cores // 2))):
        command = threads[machines]
        assert command[command.index("--num_cpu_threads_per_process") + 1] == str(expected)
    own = tmp_path / "mine.yaml"
    own.write_text("distributed_type: MULTI_GPU\nnum_processes: 2\nuse_cpu: true\n")
    assert plan_launch(str(own), {}, []).config_file == own


def test_launch_errors_name_the_problem(tmp_path, monkeypatch):
    with pytest.raises(LaunchError, match="'nope' is neither a file nor a shipped template; templates: cpu"):
        plan_launch("nope", {}, [])
    with pytest.raises(LaunchError, match="--num_processes must be a whole number, got 'two'"):
        plan_launch("cpu", {"num_processes": "two"}, [])
    for kind in ("FSDP", "DEEPSPEED"):  # accelerate does not shard CPU processes: refused, not run unsharded
        sharded_on_cpu = tmp_path / f"{kind}.yaml"
        sharded_on_cpu.write_text(f"distributed_type: {kind}\nnum_processes: 2\nuse_cpu: true\n")
        with pytest.raises(LaunchError, match=f"asks for {kind} on CPU processes.*use --accelerate_config cpu"):
            plan_launch(str(sharded_on_cpu), {}, [])
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(LaunchError, match="already started"):
        plan_launch("cpu", {}, [])
    monkeypatch.delenv("LOCAL_RANK")
    if not torch.cuda.is_available():
        for name in ("single_gpu", "multi_gpu", "fsdp"):
            with pytest.raises(LaunchError, match="runs on CUDA GPUs and this machine has none"):
                plan_launch(name, {}, [])


def test_bad_training_flags_fail_before_any_process_starts(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hftransfer.cli",
            "train",
            "--accelerate_config",
            "cpu",
            "--model",
            "x",
            "--output_dir",
            str(tmp_path / "o"),
            "--strategy",
            "nope",
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 2
    assert "unknown strategy 'nope'" in done.stderr
    assert "launching" not in done.stderr
