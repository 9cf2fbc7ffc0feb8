"""Unlabelled examples for a distillation (``--unlabeled_file`` texts, ``--unlabeled_dir`` images).

Distillation pays most where the teacher can teach on examples nobody labelled. Each is read the way ``hftransfer
predict`` reads inputs (every file checked first), scored once by the teacher with its evaluation preprocessing, and
added to the training split with the teacher's prediction as its label (its top class; for a multi-label teacher,
every label at or above its threshold): the hard term of the loss then learns the teacher's decision, and the soft
term its full distribution, on the batches the student sees. They never enter validation or test, which stay the
teacher's labelled splits, and the run's notes say how many were added.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, concatenate_datasets

from hftransfer.data.labels import LABELS, LabelledData
from hftransfer.distillation.student import StudentError

TEXT_SUFFIXES = {".txt": "text_file", ".csv": "csv", ".tsv": "csv"}
TEACHER_BATCH = 64


def read_unlabeled(task, unlabeled_file: str | None, unlabeled_dir: str | None) -> list:
    """The payloads (texts, or image paths) of the unlabelled data; refused when it is not the task's kind."""
    image = task.pixel_key is not None
    if image and unlabeled_file:
        raise StudentError(
            f"--unlabeled_file {unlabeled_file!r}: the teacher is an {task.name} model; give its unlabelled images "
            "as --unlabeled_dir FOLDER"
        )
    if not image and unlabeled_dir:
        raise StudentError(
            f"--unlabeled_dir {unlabeled_dir!r}: the teacher is a {task.name} model; give its unlabelled texts as "
            "--unlabeled_file (.txt, one per line, or a .csv/.tsv with a text column)"
        )
    if image:
        return [payload for _, payload in task.read_prediction_inputs([unlabeled_dir], {})]
    kind = TEXT_SUFFIXES.get(Path(unlabeled_file).suffix.lower())
    if kind is None:
        raise StudentError(
            f"--unlabeled_file {unlabeled_file!r}: valid kinds are {', '.join(TEXT_SUFFIXES)} (texts one per line, or "
            "a table with a text column)"
        )
    options = {kind: unlabeled_file, "flag": "--unlabeled_file"}
    return [payload for _, payload in task.read_prediction_inputs([], options)]


@torch.no_grad()
def teacher_labels(teacher, encode, payloads: list, thresholds: list[float] | None) -> list:
    """The teacher's label for each payload: a class id, or (``thresholds``: multi-label) a multi-hot vector."""
    device = next(teacher.parameters()).device
    found = []
    for start in range(0, len(payloads), TEACHER_BATCH):
        inputs = encode(payloads[start : start + TEACHER_BATCH])
        logits = teacher(**{k: v.to(device) for k, v in inputs.items()}).logits.float().cpu()
        if thresholds is None:
            found += logits.argmax(-1).tolist()
        else:
            found += (torch.sigmoid(logits).numpy() >= np.asarray(thresholds)).astype(np.float32).tolist()
    return found


def add_to_train(data: LabelledData, column: str, payloads: list, labels: list, source: str) -> None:
    """Append the teacher-labelled examples to ``data``'s training split (every other column empty)."""
    if data.columns.get("text_pair"):
        raise StudentError("unlabelled data for a text-pair model is not supported: each example would need two texts")
    train = data.splits["train"]
    rows = {name: [None] * len(payloads) for name in train.column_names}
    rows[column], rows[LABELS] = list(payloads), list(labels)
    added = Dataset.from_dict(rows).cast(train.features)
    data.splits["train"] = concatenate_datasets([train, added])
    data.notes.append(
        f"distillation: {len(payloads):,} unlabelled examples from {source} added to train, labelled by the "
        f"teacher ({len(train):,} labelled ones)"
    )
