"""Checks ``train`` makes on every run, before training: exact copies across splits (a leak: the model is scored
on examples it trained on) and classes too small in validation to be scored. ``hftransfer audit`` does the
thorough version (near duplicates, label errors, outliers)."""

from __future__ import annotations

import numpy as np

from hftransfer.data.fingerprints import example_keys, shown_values
from hftransfer.data.labels import LABELS, LabelledData, column_values
from hftransfer.data.source_ids import SOURCE

MIN_TO_VALIDATE = 5  # examples of a class in validation below which its recall moves in steps of 20 points
SHOWN = 3


def exact_leaks(data: LabelledData) -> str | None:
    """A warning naming how many examples of a later split (validation, test) copy an earlier one, or None."""
    if data.streamed or SOURCE not in data.splits["train"].column_names:
        return None
    earlier: dict[str, str] = {}
    copies: dict[str, list[tuple[str, str]]] = {}
    for split, ds in data.splits.items():
        sources = column_values(ds, SOURCE)
        keys = example_keys(shown_values(ds, data.columns), data.columns)
        copies[split] = [(source, earlier[key]) for source, key in zip(sources, keys) if key in earlier]
        for source, key in zip(sources, keys):
            earlier.setdefault(key, source)
    found = {split: pairs for split, pairs in copies.items() if pairs and split != "train"}
    if not found:
        return None
    counts = ", ".join(f"{len(pairs)} of {split}" for split, pairs in found.items())
    first = [f"{a} = {b}" for pairs in found.values() for a, b in pairs][:SHOWN]
    return (
        f"leak: {counts} are exact copies of examples in an earlier split ({'; '.join(first)}"
        f"{' …' if sum(map(len, found.values())) > SHOWN else ''}): their scores overstate the model. "
        "hftransfer audit lists them all and writes an exclude list for --exclude_file"
    )


def classes_too_small(data: LabelledData) -> str | None:
    """A note naming the classes with fewer than MIN_TO_VALIDATE validation examples, or None."""
    labels = column_values(data.splits["validation"], LABELS)
    if data.multi_label:
        counts = np.asarray(labels).sum(0) if labels else np.zeros(len(data.label_names))
    else:
        counts = np.bincount(np.asarray(labels, dtype=int), minlength=len(data.label_names))
    small = [f"{data.label_names[i]} ({int(n)})" for i, n in enumerate(counts) if n < MIN_TO_VALIDATE]
    if not small:
        return None
    shown = ", ".join(small[:10]) + (f" and {len(small) - 10} more" if len(small) > 10 else "")
    return (
        f"validation: {len(small)} class(es) have fewer than {MIN_TO_VALIDATE} examples, too few to score them "
        f"(recall moves in steps of 20 points or more): {shown}"
    )
