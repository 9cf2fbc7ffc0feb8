"""Every example's nearest neighbours among all examples of every split, by cosine similarity of centred features.

Centring first matters: the pooled features of a CNN are all positive, so raw cosines sit near 1 for any two
images and a similarity threshold would separate nothing. Written with NumPy in blocks (no index library): an
exact search of n × n similarities is a few seconds for ten thousand examples on a CPU, and exactness is what a
duplicate threshold needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK = 1024


@dataclass
class Neighbours:
    """``index[i]`` the rows nearest to row ``i`` (itself excluded), most similar first; ``similarity`` theirs."""

    index: np.ndarray
    similarity: np.ndarray


def unit_rows(features: np.ndarray) -> np.ndarray:
    centred = features - features.mean(0)
    return (centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def nearest(features: np.ndarray, k: int) -> Neighbours:
    unit = unit_rows(features)
    k = min(k, len(unit) - 1)
    index = np.zeros((len(unit), k), dtype=np.int64)
    similarity = np.zeros((len(unit), k), dtype=np.float32)
    for start in range(0, len(unit), BLOCK):
        rows = np.arange(start, min(start + BLOCK, len(unit)))
        scores = unit[rows] @ unit.T
        scores[np.arange(len(rows)), rows] = -np.inf  # not its own neighbour
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(scores, top, 1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        index[rows], similarity[rows] = np.take_along_axis(top, order, 1), np.take_along_axis(top_scores, order, 1)
    return Neighbours(index, np.clip(similarity, -1.0, 1.0))
