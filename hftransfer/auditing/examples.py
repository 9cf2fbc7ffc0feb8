"""Every example of every split in one table: its ``split:id``, labels, exact-duplicate key and what a page shows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hftransfer.data.fingerprints import example_keys, shown_values
from hftransfer.data.labels import LABELS, LabelledData, column_values
from hftransfer.data.source_ids import SOURCE


@dataclass
class PooledExamples:
    sources: list[str]  # ``split:id``, the user's split (a carved validation example is ``train:…``)
    labels: np.ndarray  # class ids, or multi-hot rows
    keys: list[str]  # equal for exact duplicates
    shown: list  # a path, an image held in the dataset, or the text
    modality: str  # "image" or "text"


def pool(data: LabelledData) -> PooledExamples:
    """The splits in the order of ``data.splits`` (the features' order), one row per example."""
    sources, labels, keys, shown = [], [], [], []
    for ds in data.splits.values():
        sources += column_values(ds, SOURCE)
        labels += column_values(ds, LABELS)
        values = shown_values(ds, data.columns)
        shown += values
        keys += example_keys(values, data.columns)
    return PooledExamples(sources, np.asarray(labels), keys, shown, "image" if "image" in data.columns else "text")
