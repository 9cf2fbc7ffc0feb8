"""The student of a distillation: the teacher cut to fewer layers (DistilBERT's initialisation), or a checkpoint
the user names, which must read the same inputs as the teacher (the teacher scores the student's own batches).

Cutting keeps ``n`` of the teacher's transformer layers, evenly spaced from the first to the last (``keep_layers``),
with the teacher's embeddings and fine-tuned head: the student starts as a working classifier and distillation
repairs what the missing layers did. DistilBERT initialised its 6 layers from every other of BERT's 12; keeping
the last layer as well matters more for a fine-tuned teacher, whose top layer holds the task.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from hftransfer.engine.imbalance import ADJUSTMENT_KEY
from hftransfer.errors import HftransferError
from hftransfer.evaluation.multilabel import THRESHOLDS_KEY

# what the teacher's run measured about itself, not true of a student cut from it
RUN_OUTCOME_KEYS = ("hftransfer_calibration", THRESHOLDS_KEY, ADJUSTMENT_KEY)


class StudentError(HftransferError):
    """A student that cannot be made from the teacher, or that cannot read the teacher's inputs."""


def keep_layers(total: int, n: int) -> list[int]:
    """``n`` layer indices of ``total``, evenly spaced, the first and the last included."""
    return sorted({int(round(i)) for i in np.linspace(0, total - 1, n)})


def layer_list(model) -> tuple[torch.nn.Module, str, torch.nn.ModuleList]:
    """(parent module, attribute, the ModuleList of the encoder's ``num_hidden_layers`` layers)."""
    total = getattr(model.config, "num_hidden_layers", None)
    for module in model.modules():
        for name, child in module.named_children():
            if isinstance(child, torch.nn.ModuleList) and total and len(child) == total:
                return module, name, child
    raise StudentError(
        f"the teacher ({type(model).__name__}) has no list of transformer layers to cut (config.num_hidden_layers "
        f"{total}); name a smaller checkpoint with --student MODEL"
    )


def cut_teacher(teacher, n: int | None = None):
    """A copy of ``teacher`` with ``n`` of its layers (default: half), and their indices; its config says so."""
    total = len(layer_list(teacher)[2])
    # a sentence encoder's averaging layer (backbones/sentence_pooling.py) is its pooling, not one of its layers:
    # every student keeps it on top of the n layers it keeps
    pooling = 1 if (getattr(teacher.config, "hftransfer_pooling", None) or {}).get("mode") == "mean" else 0
    total -= pooling
    n = max(1, total // 2) if n is None else n
    if not 1 <= n < total:
        raise StudentError(f"--student_layers {n}: the teacher has {total} layers; a student keeps 1 to {total - 1}")
    student = copy.deepcopy(teacher)
    parent, name, layers = layer_list(student)
    kept = keep_layers(total, n) + ([total] if pooling else [])
    setattr(parent, name, torch.nn.ModuleList(layers[i] for i in kept))
    student.config.num_hidden_layers = len(kept)
    if isinstance(getattr(student.config, "layer_types", None), list):  # per-layer attention kinds (newer configs)
        student.config.layer_types = [student.config.layer_types[i] for i in kept]
    for key in RUN_OUTCOME_KEYS:
        if hasattr(student.config, key):
            delattr(student.config, key)
    return student, kept


def check_same_inputs(teacher_processor, student_processor, student: str) -> None:
    """The teacher scores the student's batches: same vocabulary (text) or same image size and normalisation."""
    vocab = getattr(teacher_processor, "get_vocab", None)
    if vocab is not None:
        other = getattr(student_processor, "get_vocab", None)
        if other is None or vocab() != other():
            raise StudentError(
                f"--student {student!r} tokenizes text differently from the teacher (another vocabulary); the "
                "teacher scores the student's token ids, so the student must share its tokenizer (or cut the "
                "teacher: --student_layers N)"
            )
        return
    from hftransfer.data.transforms import data_config_for

    mine, theirs = data_config_for(teacher_processor), data_config_for(student_processor)
    differ = [key for key in ("input_size", "mean", "std") if tuple(mine[key]) != tuple(theirs[key])]
    if differ:
        shown = "; ".join(f"{key} {tuple(theirs[key])} against the teacher's {tuple(mine[key])}" for key in differ)
        raise StudentError(
            f"--student {student!r} reads images differently from the teacher ({shown}); the teacher scores the "
            "student's batches, so both must share the image size and normalisation"
        )
