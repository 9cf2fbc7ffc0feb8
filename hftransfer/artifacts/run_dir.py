"""A finished run's output directory: recognise it, load its model, processor and recorded config.

``hftransfer eval``, ``predict``, ``export`` and ``push`` all start here, so a folder that is not a
model fails the same way everywhere, before anything is written. A folder that ships its own Python code
is refused unless the user trusts it (``backbones/checkpoints.py``); weights load from safetensors, or from
a torch pickle only through ``weights_only`` loading, which refuses pickles that would run code.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from hftransfer.backbones.checkpoints import (
    RunDirError,
    check_custom_code,
    looks_like_path,
    read_model_folder,
)
from hftransfer.backbones.heads import load_classifier
from hftransfer.config.recipes import CONFIG_FILE
from hftransfer.data.tables import SPLIT_ALIASES, DataError
from hftransfer.errors import HftransferError
from hftransfer.evaluation.multilabel import DEFAULT_THRESHOLD, saved_thresholds
from hftransfer.files.readers import label_names as checked_label_names
from hftransfer.files.readers import refusing_code_in_pickles
from hftransfer.tasks import get_task, list_tasks
from hftransfer.tasks.base import Task
from hftransfer.training.parse import RunConfig, parse_config

ONNX_DIR = "onnx"
ONNX_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"  # hftransfer export --quantize int8
FP16_FILE = "model_fp16.onnx"  # hftransfer export --quantize fp16
ONNX_VARIANTS = {"fp32": ONNX_FILE, "int8": INT8_FILE, "fp16": FP16_FILE}


@dataclass
class FinishedRun:
    path: Path
    task: Task
    label_names: list[str]
    model_config: dict  # config.json as saved
    config: RunConfig | None  # the recorded hftransfer config (None for a plain transformers model folder)
    trust_remote_code: bool = False

    @property
    def multi_label(self) -> bool:
        return self.model_config.get("problem_type") == "multi_label_classification"

    @property
    def trained_in_memory(self) -> bool:
        """The recorded config names no data source: the run read data given to the Python API, not saved."""
        data = self.config.data if self.config is not None else None
        return data is not None and not (data.train_file or data.dataset or data.data_dir)

    def thresholds(self) -> "list[float]":
        """Multi-label: each label's decision threshold (0.5 where the model records none)."""
        saved = saved_thresholds(self.model_config, self.label_names)
        return [DEFAULT_THRESHOLD] * len(self.label_names) if saved is None else saved.tolist()

    def load_model(self):
        try:
            with refusing_code_in_pickles(self.path):
                model = load_classifier(self.task.auto_model, self.path, self.model_config, self.trust_remote_code)
        except HftransferError:
            raise
        except (OSError, ValueError, RuntimeError) as err:
            raise RunDirError(
                f"{str(self.path)!r}: the model's weights could not be loaded: {' '.join(str(err).split())[:300]}"
            ) from None
        return model.eval()

    def load_processor(self):
        try:
            return self.task.auto_processor.from_pretrained(self.path, trust_remote_code=self.trust_remote_code)
        except (OSError, ValueError) as err:
            raise RunDirError(
                f"{str(self.path)!r} has no usable preprocessing files (tokenizer / image processor): {err}"
            ) from err


def open_run(path: str | Path, require_weights: bool = True, trust_remote_code: bool = False) -> FinishedRun:
    """The run in ``path``; a clear error when it is not an hftransfer or transformers classification model.

    ``require_weights=False`` accepts an ONNX export folder (config and preprocessing files, no PyTorch weights).
    Nothing from the folder runs: code it ships is refused without ``trust_remote_code``.
    """
    root = Path(path).expanduser()
    model_config = read_model_folder(root, require_weights)
    check_custom_code(root, trust_remote_code)
    recorded = root / CONFIG_FILE
    config = _recorded_config(recorded) if recorded.is_file() else None
    task = get_task(config.model.task) if config else _task_from_architecture(model_config, root)
    wanted = task.processor_files
    if wanted and not any((root / name).is_file() for name in wanted):
        raise RunDirError(
            f"{str(root)!r} has no tokenizer files (none of {', '.join(wanted)}): the model cannot read "
            "its inputs; copy them from the base model or the run's checkpoint"
        )
    label_names = checked_label_names(model_config, repr(str(root / "config.json")))
    if not label_names:
        raise RunDirError(f"{str(root / 'config.json')!r} has no labels (id2label); is it a classification model?")
    return FinishedRun(root, task, label_names, model_config, config, trust_remote_code)


def _recorded_config(recorded: Path) -> RunConfig:
    """The run's saved config, read as a recipe: a value it holds that hftransfer refuses is named with the file."""
    try:
        return parse_config(["--config", str(recorded)])
    except HftransferError as err:
        message = str(err)
        raise RunDirError(message if str(recorded) in message else f"{str(recorded)!r}: {message}") from None


def _task_from_architecture(model_config: dict, root: Path) -> Task:
    architectures = model_config.get("architectures") or []
    for task in list_tasks():
        suffix = task.auto_model.__name__.removeprefix("AutoModel") if task.auto_model else None
        if suffix and any(a.endswith(suffix) for a in architectures):
            return task
    raise RunDirError(
        f"{str(root)!r} holds a {', '.join(architectures) or 'model'} that no hftransfer task "
        f"evaluates; tasks: {', '.join(t.name for t in list_tasks())}"
    )


def eval_data_config(run: FinishedRun, data: str | None, split: str | None, columns: dict[str, str | None]):
    """The run's recorded config with its data source replaced by ``data`` (a folder, a file or a Hub id).

    A file or a Hub split is read as the ``train`` role of the loaders (the only role they always have);
    ``eval_split`` maps it back. Column options (text_column, image_column, label_column) override the run's.
    """
    if run.config is None:
        raise RunDirError(
            f"{str(run.path)!r} has no {CONFIG_FILE}: evaluating it needs the task's column options; "
            "evaluate the output_dir of `hftransfer train`"
        )
    config = copy.deepcopy(run.config)
    if data is None and run.trained_in_memory:
        raise RunDirError(
            f"{str(run.path)!r} was trained on data given in memory (Python API), so its own data cannot "
            "be reloaded; evaluate it with --data PATH (data= in Python)"
        )
    if data is not None:  # other data: the run's exclude list names examples of its own data, not of these
        config.data.data_dir = config.data.train_file = config.data.dataset = config.data.exclude_file = None
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
    wanted = SPLIT_ALIASES.get(wanted, wanted)
    if wanted not in available:
        raise DataError(f"no {wanted!r} split in the evaluation data; its splits: {', '.join(available)}")
    return wanted
