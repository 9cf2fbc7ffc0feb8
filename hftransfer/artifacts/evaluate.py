"""``hftransfer eval``: a finished run evaluated on its own data or on any labelled folder, file or Hub split.

The report is written to ``OUTPUT_DIR/eval/<data>-<split>/`` (or ``--output_dir``): each of its files whole, by a
rename. Nothing else in that folder is touched: an earlier report's files are replaced only with ``overwrite``, and
a trained run's own folder is refused as the destination (its evaluation report would replace the run's).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoConfig, TrainingArguments

from hftransfer.artifacts.onnx_module import OnnxClassifier
from hftransfer.artifacts.predict import onnx_model
from hftransfer.artifacts.run_dir import FinishedRun, RunDirError, eval_data_config, open_run, pick_split
from hftransfer.config.commands import EvalOptions
from hftransfer.config.recipes import CONFIG_FILE
from hftransfer.data.tables import DataError
from hftransfer.engine.progress import output_is_piped, quiet_library_progress_bars
from hftransfer.engine.trainer import ClassificationTrainer
from hftransfer.evaluation.report import (
    REPORT_FILE,
    confusion_png_name,
    evaluate_splits,
    pr_png_name,
    reduce_logits,
    save_eval_outputs,
)
from hftransfer.files.output_policy import Input, Output, check_output
from hftransfer.files.written import record_entries, recorded_entries

logger = logging.getLogger("hftransfer")


@dataclass
class EvalTarget:
    """What is evaluated and how the report names it."""

    loaded: object  # LabelledData with the one split to score, as "validation"
    config: object  # the run's config with the evaluation data in place of its own
    label: str  # the report's name for what was scored (a split, or a file's name)
    folder: Path  # where the report goes


def evaluate_run(
    path: str | Path,
    data: str | None = None,
    split: str | None = None,
    output_dir: str | None = None,
    columns: dict | None = None,
    batch_size: int = 64,
    max_samples: int | None = None,
    overwrite: bool = False,
    trust_remote_code: bool = False,
    onnx: bool | str = False,
):
    """Evaluate a finished run on a labelled split; writes the report and the confusion matrix PNG.

    Returns (report, folder written). Without ``data`` the run's own data is reloaded (validation by default).
    ``onnx``: the ONNX export (True, ``"fp32"``) or its quantized model (``"int8"``, ``"fp16"``) is scored.
    """
    EvalOptions(batch_size, max_samples)  # every value checked before any work
    folder, onnx_file, variant = onnx_model(path, onnx)
    run = open_run(folder, require_weights=onnx_file is None, trust_remote_code=trust_remote_code)
    quiet_library_progress_bars()
    suffix = f"-onnx-{variant}" if onnx_file else ""
    reports_in = Path(path).expanduser() / "eval"  # the folder named: the run's, not its onnx/ inside
    target = _eval_target(
        run,
        data,
        split,
        output_dir or _default_folder(reports_in, data, split, suffix),
        columns or {},
        max_samples,
        overwrite,
    )
    processor = run.load_processor()
    model_config = AutoConfig.from_pretrained(run.path, trust_remote_code=run.trust_remote_code)
    model = OnnxClassifier(onnx_file, run.multi_label) if onnx_file else run.load_model()
    prepared = run.task.prepare_datasets(target.config, processor, target.loaded, model_config, augment=False)
    staging = Path(tempfile.mkdtemp(prefix=".eval-"))
    try:
        trainer = _evaluation_trainer(run, target, model, processor, staging, batch_size)
        temperature = (run.model_config.get("hftransfer_calibration") or {}).get("temperature")
        _, reports = evaluate_splits(
            trainer, prepared, target.loaded, run.task, splits=("validation",), temperature=temperature
        )  # a calibrated model: scores before it too
        report = reports["validation"]
        report["source"] = {
            "data": data or "the run's own data",
            "split": target.label,
            "model": str(onnx_file or run.path),
            "notes": list(target.loaded.notes),
        }
        for note in target.loaded.notes if data is not None else ():
            logger.warning(note)  # how the given data was read (labels read as ids …): said, not silent
        if trainer.is_world_process_zero():
            _write_report(target.folder, report, target.label, f"{run.path.name} · {_source_name(data)}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report, target.folder


def _evaluation_trainer(run: FinishedRun, target: EvalTarget, model, processor, staging: Path, batch_size: int):
    """The Trainer that only predicts: the run's collator and metrics, batches of ``batch_size``."""
    args = TrainingArguments(
        output_dir=str(staging),
        per_device_eval_batch_size=batch_size,
        report_to="none",
        remove_unused_columns=target.config.training.remove_unused_columns,
        dataloader_pin_memory=False,
        disable_tqdm=output_is_piped(),
    )
    return ClassificationTrainer(
        model=model,
        args=args,
        data_collator=run.task.build_collator(target.config, processor),
        compute_metrics=run.task.compute_metrics,
        preprocess_logits_for_metrics=reduce_logits,
    )


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
        if from_file and split is not None:
            raise DataError(
                f"--split {split!r}: {data!r} is one file, with no splits; --split picks a split of a "
                "folder with train/ val/ test/ or of a Hub dataset"
            )
        try:
            loaded = run.task.load_data(config, model_labels=run.label_names)
        except DataError as err:
            raise DataError(f"evaluation data {data!r}: {err}") from None
    chosen = pick_split(list(loaded.splits), split, from_file or hub)
    source = _source_name(data)
    flat_folder = data is not None and not hub and list(loaded.splits) == ["train"]  # root/<class>/*, no splits
    label = source if from_file or flat_folder else (split or "test") if hub else chosen
    folder = Path(output_dir(label) if callable(output_dir) else output_dir).expanduser()
    inputs = [Input("the run", run.path, outputs_inside=True), Input("--data", data)]
    check_report_folder(folder, label, overwrite, inputs)
    raw = loaded.splits[chosen]
    if max_samples is not None and len(raw) > max_samples:
        raw = raw.shuffle(seed=0).select(range(max_samples))
    loaded.splits = {"validation": raw}  # evaluation preprocessing (no augmentation, no training truncation)
    return EvalTarget(loaded, config, label, folder)


def _default_folder(reports_in: Path, data: str | None, split: str | None, suffix: str):
    """``label -> MODEL_DIR/eval/<data>-<split><suffix>``, the report's folder once the split's label is known."""
    source = _source_name(data)
    return lambda label: reports_in / _slug((source if source == label else f"{source}-{label}") + suffix)


def _source_name(data: str | None) -> str:
    """How the report names the data: "run" for the run's own, a file's stem, a folder's or dataset's name."""
    if data is None:
        return "run"
    return Path(data).stem if Path(data).expanduser().is_file() else Path(data).name


def report_files(label: str) -> list[str]:
    """The files an evaluation report of ``label`` consists of (a multi-label report has its PR curves instead of
    the confusion matrix; both names are the report's)."""
    return [REPORT_FILE, confusion_png_name(label), pr_png_name(label)]


def check_report_folder(folder: Path, label: str, overwrite: bool, inputs: list[Input] | None = None) -> None:
    """Refuse a destination where the report would replace what it did not write (before any work)."""
    check_output(Output("--output_dir", folder, writes=tuple(report_files(label))), inputs or [])
    if (folder / CONFIG_FILE).is_file() or (folder / "config.json").is_file():
        raise RunDirError(
            f"--output_dir {str(folder)!r} holds a trained model; its files would be replaced by the "
            "evaluation's: choose another --output_dir (by default reports go to MODEL_DIR/eval/)"
        )
    existing = [name for name in report_files(label) if (folder / name).exists()]
    if existing and not overwrite:
        raise RunDirError(
            f"{str(folder)!r} already holds an evaluation ({', '.join(existing)}); pass --overwrite to "
            "replace those files, or choose --output_dir"
        )


def _write_report(folder: Path, report: dict, label: str, title: str) -> None:
    """The report and its figures, written in a temporary folder inside ``folder`` and then each renamed into
    place: only the report's own files are replaced, the folder's other files stay."""
    folder.mkdir(parents=True, exist_ok=True)
    written = Path(tempfile.mkdtemp(prefix=".eval-out-", dir=folder))
    try:
        new = {path.name for path in save_eval_outputs(written, {label: report}, title)}
        record_entries(folder, *new)
        for name in new:
            os.replace(written / name, folder / name)
        ours = recorded_entries(folder)
        for stale in set(report_files(label)) - new:  # e.g. the confusion matrix of a report that had one
            if stale in ours:
                (folder / stale).unlink(missing_ok=True)
    finally:
        shutil.rmtree(written, ignore_errors=True)


def _slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "-", text).strip("-") or "eval"
