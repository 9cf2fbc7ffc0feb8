"""``hftransfer eval``: a finished run evaluated on its own data or on any labelled folder, file or Hub split.

The report is written to ``OUTPUT_DIR/eval/<data>-<split>/`` (or ``--output_dir``) whole, by a rename, and an
earlier report there is replaced only with ``overwrite``.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoConfig, TrainingArguments

from hftransfer.artifacts.run_dir import FinishedRun, RunDirError, eval_data_config, open_run, pick_split
from hftransfer.data.tables import DataError
from hftransfer.evaluation.report import evaluate_splits, reduce_logits, save_eval_outputs
from hftransfer.training.trainer import ClassificationTrainer


@dataclass
class EvalTarget:
    """What is evaluated and how the report names it."""

    loaded: object  # LabelledData with the one split to score, as "validation"
    config: object  # the run's config with the evaluation data in place of its own
    label: str  # the report's name for what was scored (a split, or a file's name)
    folder: Path  # where the report goes


def evaluate_run(path: str | Path, data: str | None = None, split: str | None = None, output_dir: str | None = None,
                 columns: dict | None = None, batch_size: int = 64, max_samples: int | None = None,
                 overwrite: bool = False, trust_remote_code: bool = False):
    """Evaluate a finished run on a labelled split; writes the report and the confusion matrix PNG.

    Returns (report, folder written). Without ``data`` the run's own data is reloaded (validation by default).
    """
    if batch_size < 1:
        raise RunDirError(f"batch_size must be at least 1, got {batch_size}")
    run = open_run(path, trust_remote_code=trust_remote_code)
    target = _eval_target(run, data, split, output_dir, columns or {}, max_samples, overwrite)
    processor = run.load_processor()
    model_config = AutoConfig.from_pretrained(run.path, trust_remote_code=run.trust_remote_code)
    prepared = run.task.prepare_datasets(target.config, processor, target.loaded, model_config, augment=False)
    staging = Path(tempfile.mkdtemp(prefix=".eval-"))
    try:
        args = TrainingArguments(output_dir=str(staging), per_device_eval_batch_size=batch_size, report_to="none",
                                 remove_unused_columns=target.config.training.remove_unused_columns,
                                 dataloader_pin_memory=False, disable_tqdm=False)
        trainer = ClassificationTrainer(model=run.load_model(), args=args,
                                        data_collator=run.task.build_collator(target.config, processor),
                                        compute_metrics=run.task.compute_metrics,
                                        preprocess_logits_for_metrics=reduce_logits)
        temperature = (run.model_config.get("hftransfer_calibration") or {}).get("temperature")
        _, reports = evaluate_splits(trainer, prepared, target.loaded, run.task, splits=("validation",),
                                     temperature=temperature)  # a calibrated model: scores before it too
        report = reports["validation"]
        report["source"] = {"data": data or "the run's own data", "split": target.label, "model": str(run.path)}
        if trainer.is_world_process_zero():
            _write_report(target.folder, report, target.label, f"{run.path.name} · {_source_name(data)}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report, target.folder


def _eval_target(run: FinishedRun, data, split, output_dir, columns, max_samples, overwrite) -> EvalTarget:
    """Load the data to score (checked against the model's labels) and decide the report's name and folder."""
    config = eval_data_config(run, data, split, columns)
    from_file = data is not None and Path(data).expanduser().is_file()
    hub = data is not None and config.data.dataset is not None
    if data is None and split is None:
        split = "validation"
    if data is None:  # the run's own splits, rebuilt exactly (a carved validation split is carved again)
        loaded = run.task.load_data(config)
        if loaded.label_names != run.label_names:
            raise DataError(f"the run's data now has labels {loaded.label_names}, the model {run.label_names}")
    else:
        loaded = run.task.load_data(config, model_labels=run.label_names)
    chosen = pick_split(list(loaded.splits), split, from_file or hub)
    source = _source_name(data)
    flat_folder = data is not None and not hub and list(loaded.splits) == ["train"]  # root/<class>/*, no splits
    label = source if from_file or flat_folder else (split or "test") if hub else chosen
    default = run.path / "eval" / _slug(source if source == label else f"{source}-{label}")
    folder = Path(output_dir) if output_dir else default
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise RunDirError(f"{str(folder)!r} already holds an evaluation; pass --overwrite or choose --output_dir")
    raw = loaded.splits[chosen]
    if max_samples is not None and len(raw) > max_samples:
        raw = raw.shuffle(seed=0).select(range(max_samples))
    loaded.splits = {"validation": raw}  # evaluation preprocessing (no augmentation, no training truncation)
    return EvalTarget(loaded, config, label, folder)


def _source_name(data: str | None) -> str:
    """How the report names the data: "run" for the run's own, a file's stem, a folder's or dataset's name."""
    if data is None:
        return "run"
    return Path(data).stem if Path(data).expanduser().is_file() else Path(data).name


def _write_report(folder: Path, report: dict, label: str, title: str) -> None:
    """The report and its figures, written in a temporary folder beside ``folder`` and then renamed into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    written = Path(tempfile.mkdtemp(prefix=".eval-out-", dir=folder.parent))
    try:
        save_eval_outputs(written, {label: report}, title)
        if folder.exists():
            shutil.rmtree(folder)
        written.replace(folder)
    finally:
        shutil.rmtree(written, ignore_errors=True)


def _slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "-", text).strip("-") or "eval"
