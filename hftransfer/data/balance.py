"""How the training split's examples spread over the classes (single-label data)."""

from __future__ import annotations

import numpy as np

from hftransfer.data.labels import LABELS, column_values


def train_class_counts(data) -> np.ndarray:
    """Training examples per class, in label order."""
    labels = np.asarray(column_values(data.splits["train"], LABELS), dtype=np.int64)
    return np.bincount(labels, minlength=len(data.label_names))


def imbalance_ratio(counts: np.ndarray) -> float:
    """Largest class over smallest, among the classes with examples (1 when none has any)."""
    held = np.asarray(counts)[np.asarray(counts) > 0]
    return float(held.max() / held.min()) if len(held) else 1.0


def balance_line(data) -> str | None:
    """The summary's line on the training classes' balance (None for multi-label or streamed data)."""
    if data.multi_label or data.streamed:
        return None
    counts = train_class_counts(data)
    missing = int((counts == 0).sum())
    return (
        f"classes in train: {int(counts[counts > 0].min())} to {int(counts.max())} examples, imbalance ratio "
        f"{imbalance_ratio(counts):.1f}" + (f"; {missing} without any" if missing else "")
    )
