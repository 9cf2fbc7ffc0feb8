"""The run's output directory: refused when it would lose the user's files, cleaned when the user asks to
overwrite, and checkpoints that can only be resumed by the run that wrote them.

Every checkpoint carries a run record (``hftransfer_run.json``: the settings that decide the training
trajectory and their fingerprint) and the run's config. ``--resume`` continues a checkpoint only when its
record matches the command's settings, so a folder holding another run's checkpoints cannot silently
continue that other run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, sort_checkpoints

from hftransfer.config.recipes import CONFIG_FILE
from hftransfer.errors import HftransferError
from hftransfer.files.atomic import staging_dir, write_text_atomically
from hftransfer.files.output_policy import Output, check_output
from hftransfer.files.readers import check_safetensors, torch_file
from hftransfer.files.written import (
    WORKING_DIR_PREFIX,
    WRITTEN_RECORD,
    forget_entries,
    record_entries,
    recorded_entries,
)
from hftransfer.training.run_files import RUN_WRITES, run_inputs

logger = logging.getLogger("hftransfer")

RUN_RECORD = "hftransfer_run.json"
# TrainingArguments that decide where training goes; the others (logging, saving, workers, precision …) may
# differ between a run and its resumption.
TRAJECTORY_ARGS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "weight_decay",
    "warmup_steps",
    "lr_scheduler_type",
    "optim",
    "seed",
    "label_smoothing_factor",
    "max_grad_norm",
)
# hftransfer options that do not change the trajectory (where caches live, how long to wait, memory layout).
RESUMABLE_CHANGES = {
    "overwrite_output_dir",
    "dry_run",
    "feature_cache_dir",
    "cache_features",
    "early_stopping_patience",
    "preprocessing_num_workers",
    "channels_last",
    "cache_dir",
    "candidates",
    "trust_remote_code",
}


class OutputDirError(HftransferError):
    """An output directory that would be overwritten without being asked, or a checkpoint that cannot resume."""


def check_output_dir(config) -> None:
    """Refuse an output_dir that cannot be written, is one of the run's inputs, or would be overwritten without being
    asked (writes nothing)."""
    out = Path(config.training.output_dir).expanduser()
    check_output(
        Output("output_dir", config.training.output_dir, writes=RUN_WRITES), run_inputs(config), ours=written_here
    )
    if not _holds_files(out):
        return
    if config.transfer.overwrite_output_dir or config.training.resume_from_checkpoint:
        return  # what the run would replace or remove was checked above: only entries hftransfer wrote
    raise OutputDirError(
        f"output_dir {str(out)!r} is not empty; choose another output_dir, pass --overwrite_output_dir to replace "
        "the run in it, or --resume to continue it"
    )


@contextmanager
def output_dir_lock(config):
    """Hold an exclusive lock on output_dir for the run (main process), so a second run started into the same folder
    is refused instead of silently replacing the first one's files.

    The lock is the operating system's (``flock`` on the folder itself): it ends with the process that holds it,
    however that process ends, so a crashed run never leaves a stale lock behind. A folder created only to be
    locked is removed again if the run leaves it empty (a refused start writes nothing).
    """
    out = Path(config.training.output_dir).expanduser()
    fcntl = _fcntl()
    try:
        usable = not out.exists() or out.is_dir()
    except OSError:  # a name too long, a link loop: the output checks name it
        usable = False
    if config.training.process_index != 0 or fcntl is None or not usable:
        yield  # other processes share the main one's lock; a path that is not a folder is refused by the checks
        return
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = os.open(out, os.O_RDONLY)
    except OSError:
        yield  # cannot be created or opened: check_output_dir names the reason
        return
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another process holds it
            raise OutputDirError(
                f"output_dir {str(out)!r} is in use by another hftransfer run that is still going; "
                "wait for it to end or choose another output_dir"
            ) from None
        except OSError as err:  # a filesystem without locks (some network mounts): run, unlocked, and say so
            logger.warning(
                "output_dir %s cannot be locked (%s): a second run started into it would not be refused",
                out,
                err.strerror or err,
            )
        yield
    finally:
        os.close(handle)  # releases the lock
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()


def _fcntl():
    """The ``fcntl`` module, or None where the platform has none (Windows: runs there are not locked)."""
    try:
        import fcntl
    except ImportError:
        return None
    return fcntl


def written_here(out: Path) -> set[str]:
    """The entries of ``out`` hftransfer wrote: those its record names, and checkpoints carrying a run record
    (written before the record existed)."""
    ours = recorded_entries(out)
    if out.is_dir():
        ours |= {entry.name for entry in out.iterdir() if (entry / RUN_RECORD).is_file()}
    return ours


def _holds_files(out: Path) -> bool:
    """True when ``out`` holds anything but what a run that crashed while saving leaves behind (its staging folder
    and the record naming it)."""
    if not out.is_dir():
        return False
    leftovers = {staging_dir(out).name, WRITTEN_RECORD} if staging_dir(out).name in recorded_entries(out) else set()
    return any(entry.name not in leftovers for entry in out.iterdir())


def start_clean(config) -> list[str]:
    """With ``overwrite_output_dir`` (and no resume): remove the previous run's checkpoints and working folders, so
    nothing of it can be resumed or mistaken for this run's. Its final model stays until the new one replaces it.
    Only entries hftransfer recorded writing are removed (``written_here``). Returns what was removed."""
    out = Path(config.training.output_dir)
    if not config.transfer.overwrite_output_dir or config.training.resume_from_checkpoint or not out.is_dir():
        return []
    ours = written_here(out)
    stale = sorted(
        (out / name for name in ours if (out / name).is_dir() and _is_working_folder(out, name)), key=lambda p: p.name
    )
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    forget_entries(out, *(p.name for p in stale))
    if stale:
        logger.info(
            "overwrite_output_dir: removed %d folder(s) of the previous run (%s)",
            len(stale),
            ", ".join(p.name for p in stale[:5]) + (" …" if len(stale) > 5 else ""),
        )
    return [p.name for p in stale]


def _is_working_folder(out: Path, name: str) -> bool:
    """A checkpoint, a probe's working folder or a model's staging folder: what a finished run no longer needs."""
    return rotated_by_transformers(name) or name.startswith(WORKING_DIR_PREFIX) or out / name == staging_dir(out)


def rotated_by_transformers(name: str) -> bool:
    """What transformers' checkpoint rotation takes for a checkpoint (``trainer_utils.sort_checkpoints``: a folder
    ``checkpoint-*`` whose path matches ``checkpoint-<digits>``), and deletes once ``save_total_limit`` newer ones
    exist."""
    prefix = f"{PREFIX_CHECKPOINT_DIR}-"
    return name.startswith(prefix) and re.search(rf"{prefix}[0-9]", name) is not None


# --- run records and resuming ---------------------------------------------------------------------------------


def run_settings(config) -> dict:
    """The settings that decide a run's trajectory, flat and JSON-ready (what a resumed run must share)."""
    sections = config.to_dict()
    settings = {
        k: v
        for section in ("model", "data", "transfer")
        for k, v in sections[section].items()
        if k not in RESUMABLE_CHANGES
    }
    settings.update({k: sections["training"].get(k) for k in TRAJECTORY_ARGS})
    return json.loads(json.dumps(settings, default=str))


def fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


class RunRecordCallback(TrainerCallback):
    """Writes the run record and the run's config into every checkpoint, on the main process."""

    def __init__(self, config):
        self.config = config
        self.settings = run_settings(config)

    def _record_next_checkpoint(self, args, state, control):
        """Name the checkpoint about to be written in the folder's record first, so even one cut short by a crash
        is known to be this tool's (and is removed by ``--overwrite_output_dir``)."""
        if control.should_save and state.is_world_process_zero:
            record_entries(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")

    def on_step_end(self, args, state, control, **kwargs):
        self._record_next_checkpoint(args, state, control)
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        self._record_next_checkpoint(args, state, control)
        return control

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            record_entries(args.output_dir, folder.name)
            if folder.is_dir():
                self.config.save(folder / CONFIG_FILE)
                record = {"fingerprint": fingerprint(self.settings), "settings": self.settings}
                write_text_atomically(folder / RUN_RECORD, json.dumps(record, indent=2))
        return control


def resolve_checkpoint(config) -> str | None:
    """``resume_from_checkpoint``: a path, or ``latest``/``true`` for the newest complete checkpoint in output_dir."""
    wanted = config.training.resume_from_checkpoint
    if wanted is None or wanted.lower() in {"false", "no", "none", ""}:
        return None
    if wanted.lower() in {"latest", "true", "yes"}:
        last = latest_complete_checkpoint(config.training.output_dir)
        if last is None:
            raise OutputDirError(
                f"--resume: no complete checkpoint to resume from in {config.training.output_dir!r}; "
                "start the run without --resume"
            )
        return last
    if not Path(wanted).is_dir():
        raise OutputDirError(f"--resume: checkpoint not found: {wanted!r}")
    if not _state_is_whole(Path(wanted)):
        raise OutputDirError(
            f"--resume: checkpoint {wanted!r} is incomplete (its {TRAINER_STATE_NAME} is missing or "
            "cut short: the run stopped while writing it); resume from an earlier one"
        )
    return wanted


def verify_checkpoint(checkpoint: str, config) -> None:
    """Refuse to resume a checkpoint that another run (other settings, or no hftransfer record) wrote."""
    path = Path(checkpoint) / RUN_RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise OutputDirError(
            f"--resume: {checkpoint!r} has no hftransfer run record ({RUN_RECORD}): it was written "
            "by another tool or run, so continuing it as this run cannot be checked; start afresh "
            "with --overwrite_output_dir or another output_dir"
        ) from None
    current = run_settings(config)
    if record.get("fingerprint") == fingerprint(current):
        _check_unfinished(checkpoint)
        check_checkpoint_files(checkpoint)
        return
    stored = record.get("settings", {})
    changed = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
    shown = "; ".join(f"{k}: {stored.get(k)!r} there, {current.get(k)!r} now" for k in changed[:5])
    raise OutputDirError(
        f"--resume: {checkpoint!r} belongs to a run with other settings ({shown}); resume with the "
        "same options, or start afresh with --overwrite_output_dir"
    )


def check_checkpoint_files(checkpoint: str | Path) -> None:
    """Every file the Trainer loads on resuming, read once through the guarded readers before any work: weights
    whole, and no pickle (optimizer, scheduler, scaler, RNG states) that would run code or is cut short."""
    from transformers.trainer_pt_utils import safe_globals  # the numpy allow-list transformers loads RNG states with

    for path in sorted(Path(checkpoint).iterdir()):
        if path.suffix == ".safetensors":
            check_safetensors(path)
        elif path.suffix in {".pt", ".pth"} or path.name == "pytorch_model.bin":
            torch_file(path, allowed=safe_globals())


def _check_unfinished(checkpoint: str) -> None:
    """A checkpoint taken at the run's last step has nothing left to resume (transformers would train one more step)."""
    state = json.loads((Path(checkpoint) / TRAINER_STATE_NAME).read_text(encoding="utf-8"))
    step, last = state.get("global_step", 0), state.get("max_steps", 0)
    if last and step >= last:
        raise OutputDirError(
            f"--resume: {checkpoint!r} is the end of its run (step {step} of {last}); nothing is left "
            "to train. Start a new run with --overwrite_output_dir or another output_dir"
        )


def latest_complete_checkpoint(output_dir: str) -> str | None:
    """The newest ``checkpoint-N`` that was written whole.

    A run killed while writing a checkpoint leaves a folder with part of its files, which transformers'
    ``get_last_checkpoint`` would pick and resuming would then fail on. The Trainer writes
    ``trainer_state.json`` last, and the run record follows it, so a checkpoint with both is complete.
    """
    if not Path(output_dir).is_dir():
        return None
    for checkpoint in reversed(sort_checkpoints(output_dir)):  # newest step first
        if _state_is_whole(Path(checkpoint)) and (Path(checkpoint) / RUN_RECORD).is_file():
            return checkpoint
        logger.warning("skipping %s: incomplete (the run stopped while writing it) or not this tool's", checkpoint)
    return None


def _state_is_whole(checkpoint: Path) -> bool:
    try:
        json.loads((checkpoint / TRAINER_STATE_NAME).read_text(encoding="utf-8"))
        return True
    except (OSError, ValueError):
        return False
