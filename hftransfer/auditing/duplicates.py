"""Duplicates and leaks: exact (the same file bytes, the same normalised text) and near (feature similarity).

A pair whose members sit in different splits is a leak (a test example the model may have trained on) and is
listed first; then pairs inside one split, most similar first.
"""

from __future__ import annotations

from collections import defaultdict

from hftransfer.auditing.neighbours import Neighbours
from hftransfer.data.fingerprints import NearRule, perceptual_hash
from hftransfer.data.source_ids import SPLITS, id_of, split_of

HASH_BITS_APART = 4  # perceptual-hash bits (of 63) within which two images are the same picture


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


def near_pairs(
    neighbours: Neighbours, rule: NearRule, exact: list[tuple[int, int]], same_picture=None
) -> list[tuple[int, int, float]]:
    """Each example with every one of its nearest neighbours that ``rule`` calls a near duplicate (exact pairs
    left out). Not the nearest alone: a test photo copied into train whose test split holds a second copy of it
    has that copy as its nearest neighbour (seen in Caltech-101)."""
    seen = {tuple(sorted(pair)) for pair in exact}
    found = []
    for row in range(len(neighbours.index)):
        for other, similarity in zip(neighbours.index[row], neighbours.similarity[row]):
            if similarity < rule.candidate:
                break  # most similar first: the rest are further
            pair = (min(row, int(other)), max(row, int(other)))
            if pair in seen:
                continue
            if similarity >= rule.certain or (same_picture is not None and same_picture(*pair)):
                seen.add(pair)
                found.append((*pair, float(similarity)))
    return found


class SamePicture:
    """Whether two images' perceptual hashes lie within HASH_BITS_APART bits (each image hashed once)."""

    def __init__(self, shown: list):
        self.shown, self.hashes = shown, {}

    def hash(self, row: int):
        if row not in self.hashes:
            self.hashes[row] = perceptual_hash(self.shown[row])
        return self.hashes[row]

    def __call__(self, a: int, b: int) -> bool:
        return int((self.hash(a) != self.hash(b)).sum()) <= HASH_BITS_APART


def duplicate_records(
    sources: list[str], keys: list[str], neighbours: Neighbours, rule: NearRule, same_picture=None
) -> list[dict]:
    """The report's ``duplicates``: leaks first, then by similarity."""
    exact = exact_pairs(sources, keys)
    records = [_record(sources, a, b, 1.0, True) for a, b in exact]
    near = near_pairs(neighbours, rule, exact, same_picture)
    records += [_record(sources, a, b, s, False) for a, b, s in near]
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
