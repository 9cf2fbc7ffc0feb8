"""A finished run's output directory: recognise it, load its model, processor and recorded config.

``hftransfer eval``, ``predict``, ``export`` and ``push`` all start here, so a folder that is not a
model fails the same way everywhere, before anything is written.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hftransfer.config import RunConfig, parse_config
from hftransfer.data import DataError
from hftransfer.models import looks_like_path
from hftransfer.registry import Task, get_task, list_tasks

CONFIG_FILE = "hftransfer_config.yaml"
ONNX_DIR = "onnx"
ONNX_FILE = "model.onnx"


class RunDirError(ValueError):
    """A directory that is not a usable model output; the message says what is missing."""


@dataclass
class FinishedRun:
    path: Path
    task: Task
    label_names: list[str]
    model_config: dict  # config.json as saved
    config: RunConfig | None  # the recorded hftransfer config (None for a plain transformers model folder)

    @property
    def remote_code(self) -> bool:
        """True when the model needs its own modeling file (an MLP head): ``trust_remote_code``."""
        return bool(self.model_config.get("auto_map"))

    def load_model(self):
        try:
            model = self.task.auto_model.from_pretrained(self.path, trust_remote_code=self.remote_code)
        except (OSError, ValueError) as err:
            raise RunDirError(f"{str(self.path)!r}: the model's weights could not be loaded: {err}") from err
        return model.eval()

    def load_processor(self):
        try:
            return self.task.auto_processor.from_pretrained(self.path)
        except (OSError, ValueError) as err:
            raise RunDirError(f"{str(self.path)!r} has no usable preprocessing files (tokenizer / image "
                              f"processor): {err}") from err


def open_run(path: str | Path, require_weights: bool = True) -> FinishedRun:
    """The run in ``path``; a clear error when it is not an hftransfer or transformers classification model.

    ``require_weights=False`` accepts an ONNX export folder (config and preprocessing files, no PyTorch weights).
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise RunDirError(f"model directory not found: {str(root)!r}")
    config_json = root / "config.json"
    if not config_json.is_file():
        raise RunDirError(f"{str(root)!r} is not a model directory (no config.json); give the output_dir of "
                          "`hftransfer train` or a saved transformers classification model")
    try:
        model_config = json.loads(config_json.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunDirError(f"{str(config_json)!r} is not valid JSON: {err}") from None
    if require_weights and not any((root / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json",
                                                     "pytorch_model.bin")):
        raise RunDirError(f"{str(root)!r} has a config.json but no model weights (model.safetensors)")
    recorded = root / CONFIG_FILE
    config = parse_config(["--config", str(recorded)]) if recorded.is_file() else None
    task = get_task(config.model.task) if config else _task_from_architecture(model_config, root)
    label_names = _label_names(model_config)
    if not label_names:
        raise RunDirError(f"{str(config_json)!r} has no labels (id2label); is it a classification model?")
    return FinishedRun(root, task, label_names, model_config, config)


def _label_names(model_config: dict) -> list[str]:
    if model_config.get("label_names"):  # timm wrapper models keep the names here
        return list(model_config["label_names"])
    id2label = model_config.get("id2label") or {}
    return [id2label[k] for k in sorted(id2label, key=int)]


def _task_from_architecture(model_config: dict, root: Path) -> Task:
    architectures = model_config.get("architectures") or []
    for task in list_tasks():
        suffix = task.auto_model.__name__.removeprefix("AutoModel") if task.auto_model else None
        if suffix and any(a.endswith(suffix) for a in architectures):
            return task
    raise RunDirError(f"{str(root)!r} holds a {', '.join(architectures) or 'model'} that no hftransfer task "
                      f"evaluates; tasks: {', '.join(t.name for t in list_tasks())}")


def eval_data_config(run: FinishedRun, data: str | None, split: str | None, columns: dict[str, str | None]):
    """The run's recorded config with its data source replaced by ``data`` (a folder, a file or a Hub id).

    A file or a Hub split is read as the ``train`` role of the loaders (the only role they always have);
    ``eval_split`` maps it back. Column options (text_column, image_column, label_column) override the run's.
    """
    if run.config is None:
        raise RunDirError(f"{str(run.path)!r} has no {CONFIG_FILE}: evaluating it needs the task's column options; "
                          "evaluate the output_dir of `hftransfer train`")
    config = copy.deepcopy(run.config)
    if data is not None:
        config.data.data_dir = config.data.train_file = config.data.dataset = None
        config.data.validation_file = config.data.test_file = None
        config.data.validation_split = config.data.test_split = None
        source = Path(data).expanduser()
        if source.is_dir():
            config.data.data_dir = str(source)
        elif source.is_file():
            config.data.train_file = str(source)
        elif looks_like_path(data):
            raise DataError(f"evaluation data not found: {data!r} (a folder, a file or a Hub dataset id)")
        else:
            config.data.dataset, config.data.train_split = data, split or "test"
    for key, value in columns.items():
        if value is None:
            continue
        target = config.data if hasattr(config.data, key) else config.task
        if not hasattr(target, key):
            raise DataError(f"{key} is not an option of task {run.task.name!r}")
        setattr(target, key, value)
    return config


def pick_split(available: list[str], wanted: str | None, from_file: bool) -> str:
    if from_file or (wanted is None and available == ["train"]):
        return "train"
    if wanted is None:
        return next(s for s in ("test", "validation", "train") if s in available)
    aliases = {"val": "validation", "valid": "validation", "dev": "validation"}
    wanted = aliases.get(wanted, wanted)
    if wanted not in available:
        raise DataError(f"no {wanted!r} split in the evaluation data; its splits: {', '.join(available)}")
    return wanted


def evaluate_run(path: str | Path, data: str | None = None, split: str | None = None, output_dir: str | None = None,
                 columns: dict | None = None, batch_size: int = 64, max_samples: int | None = None,
                 overwrite: bool = False):
    """Evaluate a finished run on a labelled split; writes the report and the confusion matrix PNG.

    Returns (report, folder written). Without ``data`` the run's own data is reloaded (validation by default).
    """
    from transformers import AutoConfig, TrainingArguments

    from hftransfer.trainer import ClassificationTrainer

    from hftransfer.evaluation import evaluate_splits, reduce_logits, save_eval_outputs

    run = open_run(path)
    config = eval_data_config(run, data, split, columns or {})
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
    # how the report names what it scored: the split, or the file's name for a file
    source = "run" if data is None else Path(data).stem if from_file else Path(data).name
    flat_folder = data is not None and not hub and list(loaded.splits) == ["train"]  # root/<class>/*, no splits
    label = source if from_file or flat_folder else (split or "test") if hub else chosen
    default = run.path / "eval" / _slug(source if source == label else f"{source}-{label}")
    target = Path(output_dir) if output_dir else default
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise RunDirError(f"{str(target)!r} already holds an evaluation; pass --overwrite or choose --output_dir")
    raw = loaded.splits[chosen]
    if max_samples is not None and len(raw) > max_samples:
        raw = raw.shuffle(seed=0).select(range(max_samples))
    loaded.splits = {"validation": raw}  # evaluation preprocessing (no augmentation, no training truncation)
    processor = run.load_processor()
    model_config = AutoConfig.from_pretrained(run.path, trust_remote_code=run.remote_code)
    prepared = run.task.prepare_datasets(config, processor, loaded, model_config, augment=False)
    staging = Path(tempfile.mkdtemp(prefix=".eval-"))
    try:
        args = TrainingArguments(output_dir=str(staging), per_device_eval_batch_size=batch_size, report_to="none",
                                 remove_unused_columns=config.training.remove_unused_columns,
                                 dataloader_pin_memory=False, disable_tqdm=False)
        trainer = ClassificationTrainer(model=run.load_model(), args=args,
                                        data_collator=run.task.build_collator(config, processor),
                                        compute_metrics=run.task.compute_metrics,
                                        preprocess_logits_for_metrics=reduce_logits)
        _, reports = evaluate_splits(trainer, prepared, loaded, run.task, splits=("validation",))
        report = reports["validation"]
        report["source"] = {"data": data or "the run's own data", "split": label, "model": str(run.path)}
        if trainer.is_world_process_zero():
            written = Path(tempfile.mkdtemp(prefix=".eval-out-", dir=_existing_parent(target)))
            save_eval_outputs(written, {label: report}, f"{run.path.name} · {source}")
            if target.exists():
                shutil.rmtree(target)
            written.replace(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report, target


def _slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "-", text).strip("-") or "eval"


def _existing_parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent
