"""Long-tailed, noisy variants of the shared sets, as users' data is: a few classes with many examples, many with
few, and a share of the training labels wrong. The test split stays clean and balanced, so its macro-F1 and
accuracy say how well every class is learnt, not how well the model guesses the frequent ones.

- ``long_tail_counts``: class sizes falling exponentially from ``head`` to ``head / ratio`` (the profile of the
  long-tailed CIFAR and ImageNet-LT benchmarks), the largest sizes given to the classes with the most examples
  on hand, never more than a class has.
- ``flip_labels``: a share of the rows get another class, drawn uniformly (symmetric noise, the usual model of
  annotation mistakes in the noisy-label literature).

``benchmarks/defaults.py`` builds ``trec_lt_noisy`` and ``caltech101_lt_noisy`` with these, seeded.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np


def long_tail_counts(available: dict[str, int], head: int, ratio: float) -> dict[str, int]:
    """How many examples each class keeps: ``head * ratio ** (-rank / (classes - 1))`` by rank of ``available``
    (largest first), at most what the class has and at least one."""
    ranked = sorted(available, key=lambda name: (-available[name], name))
    last = max(len(ranked) - 1, 1)
    return {
        name: max(1, min(available[name], round(head * ratio ** (-rank / last)))) for rank, name in enumerate(ranked)
    }


def flip_labels(labels: list[str], share: float, rng: random.Random) -> tuple[list[str], list[int]]:
    """``labels`` with ``round(share * len)`` rows moved to another class (uniform among the others); returns the
    new labels and the flipped rows."""
    classes = sorted(set(labels))
    rows = sorted(rng.sample(range(len(labels)), round(share * len(labels))))
    flipped = list(labels)
    for row in rows:
        flipped[row] = rng.choice([c for c in classes if c != labels[row]])
    return flipped, rows


def trec_variant(data: Path, out: Path, seed: int, noise: float = 0.10) -> list[str]:
    """TREC-50's classes with at least 50 questions: 10 per class held out as a clean, balanced test split; the
    rest cut to a 10:1 tail from 120 down to 12 per class (median under 50: the few-per-class case), ``noise`` of
    the training labels flipped. Returns the data flags."""
    import pandas as pd

    table = pd.read_csv(data / "trec" / "train.tsv", sep="\t", keep_default_na=False)
    table = table[table["label"].map(table["label"].value_counts()) >= 50][["text", "label"]]
    rng = np.random.default_rng(seed)
    test = table.groupby("label", group_keys=False).sample(n=10, random_state=rng)
    rest = table.drop(test.index)
    counts = long_tail_counts(rest["label"].value_counts().to_dict(), head=120, ratio=10)
    train = pd.concat(
        rest[rest["label"] == name].sample(n=count, random_state=rng) for name, count in sorted(counts.items())
    )
    train = train.sample(frac=1.0, random_state=rng)  # file order says nothing of the class
    train["label"], _ = flip_labels(list(train["label"]), noise, random.Random(seed))
    out.mkdir(parents=True, exist_ok=True)
    train.to_csv(out / "train.tsv", sep="\t", index=False)
    test.to_csv(out / "test.tsv", sep="\t", index=False)
    return ["--train_file", str(out / "train.tsv"), "--test_file", str(out / "test.tsv")]


def caltech_variant(data: Path, out: Path, seed: int, noise: float = 0.15) -> list[str]:
    """Caltech-101's training photos cut to a 10:1 tail (30 down to 3 per class, classes ranked in a seeded
    order), ``noise`` of them linked under another class's folder; the test split (10 per class) as it is.
    Returns the data flags."""
    rng = random.Random(seed)
    classes = sorted(p.name for p in (data / "caltech101" / "train").iterdir() if p.is_dir())
    rng.shuffle(classes)  # which classes are rare: seeded, not alphabetical and not by size
    files = {c: sorted((data / "caltech101" / "train" / c).iterdir()) for c in classes}
    order = {c: len(classes) * 100 - i for i, c in enumerate(classes)}  # ranked by the shuffled order
    counts = long_tail_counts(order, head=30, ratio=10)
    chosen = [(path, c) for c in classes for path in rng.sample(files[c], min(counts[c], len(files[c])))]
    labels, _ = flip_labels([c for _, c in chosen], noise, rng)
    while set(labels) != set(classes):  # a rare class flipped away entirely: its test photos could not be learnt
        labels, _ = flip_labels([c for _, c in chosen], noise, rng)
    root = out / "caltech101_lt"
    for (path, _), label in zip(chosen, labels):
        link = root / "train" / label / f"{path.parent.name}-{path.name}"  # the same file name in two classes
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path)
    for path in sorted((data / "caltech101" / "test").glob("*/*")):
        link = root / "test" / path.parent.name / path.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path)
    return ["--data_dir", str(root)]
