"""A model a notebook already holds, given to ``hftransfer.finetune(model=<PreTrainedModel>)``.

The run loads its backbone the way it loads every other: from a folder, with the task's head for the user's labels.
A loaded model is therefore saved (``save_pretrained``, with its processor) to a temporary folder for the run, which
then starts from exactly those weights; the folder is removed when the run ends. The processor is the one passed as
``processing_class``, else the one saved with the checkpoint the model was loaded from (``model.name_or_path``).
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from hftransfer.config.options import ConfigError


def is_model_object(value: Any) -> bool:
    from transformers import PreTrainedModel

    return isinstance(value, PreTrainedModel)


def check_model_value(value: Any) -> None:
    """``model=`` takes a name, a path or a ``PreTrainedModel``; anything else is refused here, naming it."""
    import torch

    if isinstance(value, torch.nn.Module) and not is_model_object(value):
        raise ConfigError(
            f"model= takes a Hub id, a folder or a transformers PreTrainedModel, got a {type(value).__name__} (a plain "
            "torch module has no config to rebuild it with a new head); for a timm model give its name (timm/...) or "
            "timm_arch= with weights="
        )


@contextmanager
def model_folder(model, processing_class, auto_processor) -> Iterator[Path]:
    """A temporary folder holding ``model`` and its processor as ``save_pretrained`` writes them; removed afterwards.
    ``auto_processor``: the task's ``Auto*`` class that loads the processor from the model's own checkpoint."""
    processor = processing_class or _processor_of(model, auto_processor)
    folder = Path(tempfile.mkdtemp(prefix="hftransfer-model-"))
    try:
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _processor_of(model, auto_processor):
    source = getattr(model, "name_or_path", "") or ""
    hint = "pass processing_class= (its tokenizer or image processor) with the model"
    if not source:
        raise ConfigError(f"the {type(model).__name__} given as model= was not loaded from a checkpoint; {hint}")
    try:
        return auto_processor.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"no processor found for the {type(model).__name__} given as model= (loaded from {source!r}: "
            f"{str(err).splitlines()[0]}); {hint}"
        ) from None
