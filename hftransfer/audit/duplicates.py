"""Duplicates and leaks: exact (the same file bytes, the same normalised text) and near (feature similarity).

A pair whose members sit in different splits is a leak (a test example the model may have trained on) and is
listed first; then pairs inside one split, most similar first.
"""

from __future__ import annotations

from collections import defaultdict

from hftransfer.audit.neighbours import Neighbours
from hftransfer.data.source_ids import SPLITS, id_of, split_of

# Cosine similarity of centred features above which two examples are reported as near duplicates, from
# benchmarks/audit.py: planted altered copies (resized and re-encoded images, re-cased or re-punctuated texts)
# against the most similar pairs of distinct examples.
NEAR_THRESHOLD = {"image": 0.95, "text": 0.97}


def split_rank(source: str) -> int:
    return SPLITS.index(split_of(source))


def exact_pairs(sources: list[str], keys: list[str]) -> list[tuple[int, int]]:
    """Each member of a group of equal keys paired with the group's first (train before validation before test)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for row, key in enumerate(keys):
        if key:
            groups[key].append(row)
    pairs = []
    for rows in groups.values():
        rows = sorted(rows, key=lambda row: (split_rank(sources[row]), row))
        pairs += [(rows[0], other) for other in rows[1:]]
    return pairs


def near_pairs(neighbours: Neighbours, threshold: float, exact: list[tuple[int, int]]) -> list[tuple[int, int, float]]:
    """Each example and its nearest neighbour when they are at least ``threshold`` similar (and not an exact pair)."""
    seen = {tuple(sorted(pair)) for pair in exact}
    found = []
    for row, (other, similarity) in enumerate(zip(neighbours.index[:, 0], neighbours.similarity[:, 0])):
        pair = (min(row, int(other)), max(row, int(other)))
        if similarity >= threshold and pair not in seen:
            seen.add(pair)
            found.append((*pair, float(similarity)))
    return found


def duplicate_records(sources: list[str], keys: list[str], neighbours: Neighbours, threshold: float) -> list[dict]:
    """The report's ``duplicates``: leaks first, then by similarity."""
    exact = exact_pairs(sources, keys)
    records = [_record(sources, a, b, 1.0, True) for a, b in exact]
    records += [_record(sources, a, b, s, False) for a, b, s in near_pairs(neighbours, threshold, exact)]
    return sorted(records, key=lambda r: (r["a"]["split"] == r["b"]["split"], -r["similarity"], not r["exact"]))


def _record(sources: list[str], a: int, b: int, similarity: float, exact: bool) -> dict:
    a, b = sorted((a, b), key=lambda row: (split_rank(sources[row]), row))
    return {
        "a": {"split": split_of(sources[a]), "id": id_of(sources[a])},
        "b": {"split": split_of(sources[b]), "id": id_of(sources[b])},
        "similarity": round(similarity, 4),
        "exact": exact,
        "rows": (a, b),
    }


def count_leaks(records: list[dict]) -> int:
    return sum(r["a"]["split"] != r["b"]["split"] for r in records)
