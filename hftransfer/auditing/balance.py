"""Class balance: examples per class and split, the training split's imbalance ratio, classes too small to score."""

from __future__ import annotations

from collections import Counter

import numpy as np

from hftransfer.data.leaks import MIN_TO_VALIDATE


def class_counts(splits: list[str], labels: list, names: list[str], multi_label: bool) -> dict[str, dict[str, int]]:
    """``{split: {label: examples}}`` (multi-label: examples carrying the label), every label listed."""
    counts: dict[str, Counter] = {}
    for split, label in zip(splits, labels):
        carried = np.flatnonzero(np.asarray(label) > 0.5).tolist() if multi_label else [int(label)]
        counts.setdefault(split, Counter()).update(names[i] for i in carried)
    return {split: {name: counts[split].get(name, 0) for name in names} for split in counts}


def imbalance_ratio(counts: dict[str, int]) -> float | None:
    """The largest class over the smallest in train (None when a class has no example)."""
    values = list(counts.values())
    return round(max(values) / min(values), 2) if values and min(values) > 0 else None


def too_small(validation_counts: dict[str, int]) -> list[str]:
    return [name for name, n in validation_counts.items() if n < MIN_TO_VALIDATE]
