"""The Python API: what a notebook needs, with the same names and behaviour as the ``hftransfer`` commands.

Options are the command line's, as keywords (``learning_rate=3e-4``, ``strategy="lp_ft"``): a recipe and
keyword options merge exactly like a recipe and flags (keywords win). Bad input raises ``HftransferError``
with the same one-line message the command prints.
"""

from __future__ import annotations

from pathlib import Path

from hftransfer.artifacts.evaluate import evaluate_run
from hftransfer.artifacts.export import export_run
from hftransfer.artifacts.predict import Prediction, predict_inputs
from hftransfer.auditing.finished_run import open_audited_run
from hftransfer.auditing.run import Audit, run_audit
from hftransfer.backbones.in_memory import check_model_value, is_model_object, model_folder
from hftransfer.config.commands import EvalOptions, ExportOptions, PredictOptions, RankOptions
from hftransfer.config.recipes import CONFIG_FILE, find_recipe
from hftransfer.data.memory import in_memory_splits, is_in_memory
from hftransfer.data.tables import SOURCE_OPTIONS, SPLIT_FILES, check_only_in_memory
from hftransfer.distillation.recipe import DistillOptions, distill_run
from hftransfer.errors import HftransferError
from hftransfer.files.output_policy import Input
from hftransfer.selection.rank import (
    CandidateScore,
    check_report_dir,
    rank_candidates,
    sample_notes,
    save_rank_outputs,
)
from hftransfer.strategies import register_strategy
from hftransfer.strategies.base import Selection, Strategy
from hftransfer.tasks import get_task, register_task
from hftransfer.training.hub import push_output_dir
from hftransfer.training.parse import parse_config
from hftransfer.training.recipe import RunResult, run
from hftransfer.training.run_files import run_inputs

__all__ = [
    "finetune",
    "audit",
    "evaluate",
    "predict",
    "rank",
    "export",
    "distill",
    "push",
    "register_strategy",
    "register_task",
    "Strategy",
    "Selection",
    "RunResult",
]


def _config(recipe: str | Path | None, options: dict, inputs: dict | None = None, callbacks: list | None = None):
    """The run's config from a recipe and keyword options, checked as values (never parsed as flags)."""
    return parse_config(
        [], recipe=find_recipe(str(recipe)) if recipe else None, options=options, inputs=inputs, callbacks=callbacks
    )


def finetune(
    recipe: str | Path | None = None,
    *,
    train=None,
    validation=None,
    test=None,
    callbacks: list | None = None,
    processing_class=None,
    **options,
) -> RunResult:
    """Train, evaluate and save a model, as ``hftransfer train RECIPE --option value …`` does.

    ``recipe`` is a recipe file or a shipped recipe's name; ``options`` are any of ``hftransfer train``'s
    options (``task=``, ``model=``, ``learning_rate=`` …). ``model`` is a Hub id, a folder, or a loaded
    ``transformers.PreTrainedModel`` (its processor: ``processing_class``, else the one of the checkpoint it was
    loaded from). ``train``, ``validation`` and ``test`` are the data:
    each a path (a file; for ``train`` also an image folder), or data already in memory: a pandas ``DataFrame``, a
    ``datasets.Dataset`` (a ``DatasetDict`` as ``train`` brings its other splits), or for images a list of
    ``(PIL image or path, label)`` pairs. ``callbacks``: ``transformers.TrainerCallback`` objects the Trainer calls.
    Returns the output folder, the final metrics (``eval_*``, ``test_*``), the evaluation reports, the resolved
    config, the trained model and its Trainer.
    """
    inputs = _data_inputs(train, validation, test, options)
    model = options.get("model")
    check_model_value(model)
    given = is_model_object(model)
    if processing_class is not None and not given:
        raise HftransferError(
            f"processing_class goes with a model object (model=<PreTrainedModel>), got model={model!r}: a Hub id "
            "or a folder brings its own tokenizer or image processor"
        )
    config = _config(recipe, {**options, "model": None} if given else options, inputs, _checked_callbacks(callbacks))
    if not given:
        return run(config)
    with model_folder(model, processing_class, get_task(config.model.task).auto_processor) as folder:
        config.model.model = str(folder)
        config.sources["model"] = "keyword (a model object)"
        config.notes.append(
            f"model: a {type(model).__name__} given to hftransfer.finetune (loaded from "
            f"{getattr(model, 'name_or_path', '') or 'no checkpoint'}); this file alone cannot repeat the run"
        )
        return run(config)


def evaluate(
    model_dir: str | Path,
    data: str | None = None,
    split: str | None = None,
    *,
    output_dir: str | None = None,
    batch_size: int = EvalOptions.batch_size,
    max_samples: int | None = None,
    overwrite: bool = False,
    trust_remote_code: bool = False,
    onnx: bool | str = False,
    **columns,
) -> dict:
    """Evaluate a trained model (``hftransfer eval``); returns the report (its folder under ``report_dir``).

    ``columns``: ``label_column``, ``text_column``, ``text_pair_column`` or ``image_column`` of ``data``.
    ``onnx``: True or ``"fp32"`` scores the ONNX export, ``"int8"`` / ``"fp16"`` its quantized model (ONNX Runtime).
    """
    _require_int("batch_size", batch_size)
    if max_samples is not None:
        _require_int("max_samples", max_samples)
    report, folder = evaluate_run(
        model_dir, data, split, output_dir, columns, batch_size, max_samples, overwrite, trust_remote_code, onnx
    )
    return {**report, "report_dir": str(folder)}


def predict(
    model_dir: str | Path,
    inputs: list[str] | str | None,
    *,
    top_k: int = PredictOptions.top_k,
    batch_size: int = PredictOptions.batch_size,
    onnx: bool | str = False,
    text_file: str | None = None,
    csv: str | None = None,
    column: str | None = None,
    trust_remote_code: bool = False,
) -> list[Prediction]:
    """Top-k labels with their scores for images (paths, folders, globs) or texts (``hftransfer predict``);
    ``onnx``: True or ``"fp32"`` runs the ONNX export, ``"int8"`` / ``"fp16"`` its quantized model."""
    _require_int("top_k", top_k)
    _require_int("batch_size", batch_size)
    items = _prediction_items(inputs, text_file or csv)
    return predict_inputs(
        model_dir,
        items,
        {"text_file": text_file, "csv": csv, "column": column},
        top_k,
        batch_size,
        onnx,
        trust_remote_code,
    )


def rank(
    recipe: str | Path | None = None,
    models: list[str] | None = None,
    *,
    sample_size: int = RankOptions.sample_size,
    by: str = RankOptions.by,
    report_dir: str | Path | None = None,
    overwrite: bool = False,
    train=None,
    validation=None,
    **options,
) -> list[CandidateScore]:
    """Score candidate backbones on the data from frozen features, best first (``hftransfer rank``).

    ``train`` and ``validation`` take what ``finetune``'s do (paths or data in memory); ``report_dir`` also writes
    ``rank_report.json`` and the plot there (an earlier ranking there is replaced only with ``overwrite``).
    """
    _require_int("sample_size", sample_size)
    base = _config(recipe, options, _data_inputs(train, validation, None, options))
    if report_dir is not None:
        check_report_dir(Path(report_dir), overwrite, run_inputs(base) + [Input("models", m) for m in models or []])
    results, data, num_train = rank_candidates(base, models, sample_size, by)
    if report_dir is not None:
        save_rank_outputs(
            results,
            Path(report_dir),
            {
                "ranked_by": by,
                "task": base.model.task,
                "num_train": num_train,
                "sample": sample_notes(data),
                "labels": data.label_names,
            },
        )
    return results


def audit(
    recipe: str | Path | None = None,
    *,
    report_dir: str | Path = "hftransfer-audit",
    overwrite: bool = False,
    fix_suggestions: str | Path | None = None,
    run: str | Path | None = None,
    train=None,
    validation=None,
    test=None,
    **options,
) -> Audit:
    """Find likely label errors, duplicates and leaks across splits, outliers and class imbalance
    (``hftransfer audit``); ``report_dir`` receives ``audit_report.json``, ``audit.html`` and ``exclude.txt``.

    The data and backbone options are ``finetune``'s (a recipe, ``train=``/``validation=``/``test=`` paths or data
    in memory, ``model=``, columns …); ``run``: a finished run whose data and backbone the audit reads and whose
    predictions join on the examples it did not train on. Returns the report (``.report``, as the JSON holds it)
    and the files written.
    """
    finished = open_audited_run(str(run)) if run is not None else None
    if finished is not None:
        if recipe is not None:
            raise HftransferError("run= reads the run's own recipe; give either a recipe or run=")
        recipe = finished.path / CONFIG_FILE
    config = _config(recipe, options, _data_inputs(train, validation, test, options))
    return run_audit(config, report_dir, overwrite, str(fix_suggestions) if fix_suggestions else None, finished)


def distill(
    teacher_dir: str | Path,
    *,
    student: str | None = None,
    student_layers: int | None = None,
    unlabeled_file: str | None = None,
    unlabeled_dir: str | None = None,
    distill_temperature: float = DistillOptions.distill_temperature,
    distill_alpha: float = DistillOptions.distill_alpha,
    **options,
) -> RunResult:
    """Train a smaller student on a finished run's soft targets and labels (``hftransfer distill``).

    The student is the teacher cut to ``student_layers`` layers (default: half), or ``student``, a checkpoint sharing
    the teacher's tokenizer or image preprocessing. It trains on the teacher's own data, plus ``unlabeled_file``
    (texts) or ``unlabeled_dir`` (images) labelled by the teacher. ``options``: any of ``finetune``'s
    (``output_dir=``, ``num_train_epochs=`` …) for the student's run. Returns the student's run, as ``finetune``.
    """
    if student_layers is not None:
        _require_int("student_layers", student_layers)
    chosen = DistillOptions(student, student_layers, unlabeled_file, unlabeled_dir, distill_temperature, distill_alpha)
    return distill_run(teacher_dir, chosen, keywords=options)


def export(
    model_dir: str | Path,
    format: str = ExportOptions.format,
    *,
    output: str | Path | None = None,
    atol: float = ExportOptions.atol,
    overwrite: bool = False,
    trust_remote_code: bool = False,
    quantize: str | None = None,
    max_accuracy_drop: float = ExportOptions.max_accuracy_drop,
) -> Path:
    """Export a trained model, checked against PyTorch (``hftransfer export``); returns the export folder.
    ``quantize="int8"`` adds ``model_int8.onnx`` (``"fp16"``: ``model_fp16.onnx``), kept only within
    ``max_accuracy_drop`` of PyTorch."""
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not atol > 0:
        raise HftransferError(f"atol must be a number > 0, got {atol!r}")
    if isinstance(max_accuracy_drop, bool) or not isinstance(max_accuracy_drop, (int, float)):
        raise HftransferError(f"max_accuracy_drop must be a number, got {max_accuracy_drop!r}")
    return export_run(model_dir, format, output, atol, overwrite, trust_remote_code, quantize, max_accuracy_drop)


def push(
    model_dir: str | Path,
    repo_id: str | None = None,
    *,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload a finished run to the Hugging Face Hub (``hftransfer push``); returns the commit URL."""
    return push_output_dir(model_dir, repo_id, private, revision, commit_message)


def _require_int(name: str, value) -> None:
    """A keyword that counts something is an integer (``"3"`` or ``3.0`` are refused, not guessed); its bounds are
    checked by the function it goes to, for the command line and Python alike."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise HftransferError(f"{name} must be an integer, got {type(value).__name__} {value!r}")


def _prediction_items(inputs, other_source) -> list[str]:
    """``inputs`` as a list of strings: one text or path, or a list of them (None only with a text_file or csv)."""
    if inputs is None and other_source:
        return []
    if isinstance(inputs, (str, Path)):
        return [str(inputs)]
    if isinstance(inputs, (list, tuple)) and all(isinstance(item, (str, Path)) for item in inputs):
        return [str(item) for item in inputs]
    shown = (
        type(inputs).__name__
        if not isinstance(inputs, (list, tuple))
        else f"a list holding {type(next(i for i in inputs if not isinstance(i, (str, Path)))).__name__}"
    )
    raise HftransferError(f"inputs must be a text or path, or a list of texts or paths, got {shown}: {inputs!r:.80}")


def _data_inputs(train, validation, test, options: dict) -> dict:
    """Paths become the file options (``options`` is completed in place); data in memory becomes Datasets."""
    given = {"train": train, "validation": validation, "test": test}
    in_memory = {split for split, value in given.items() if is_in_memory(value)}
    if not in_memory:
        for split, value in given.items():
            if value is not None:
                option = "data_dir" if split == "train" and Path(value).expanduser().is_dir() else SPLIT_FILES[split]
                _set_once(options, option, str(value), split)
        return {}
    check_only_in_memory({option: options.get(option) for option in SOURCE_OPTIONS})
    paths = sorted(split for split, value in given.items() if value is not None and split not in in_memory)
    if paths:
        raise HftransferError(
            f"{', '.join(paths)} given as a path and {', '.join(sorted(in_memory))} in memory; "
            "give every split the same way"
        )
    return in_memory_splits(train, validation, test)


def _set_once(options: dict, option: str, value: str, split: str) -> None:
    if options.get(option) not in (None, value):
        raise HftransferError(
            f"{split}={value!r} and {option}={options[option]!r} both name the {split} data; give one"
        )
    options[option] = value


def _checked_callbacks(callbacks) -> list:
    """``TrainerCallback`` objects (or classes, which the Trainer instantiates), as a list."""
    from transformers import TrainerCallback

    callbacks = list(callbacks or [])
    for callback in callbacks:
        is_class = isinstance(callback, type) and issubclass(callback, TrainerCallback)
        if not (is_class or isinstance(callback, TrainerCallback)):
            raise HftransferError(f"callbacks holds {callback!r}; each must be a transformers.TrainerCallback")
    return callbacks
