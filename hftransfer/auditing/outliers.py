"""Outliers: examples far from every other example (another modality, blank images, boilerplate texts).

The score is the mean cosine distance to the example's nearest neighbours (of any class, any split). An example
is reported when its score lies beyond Tukey's far fence of all scores (third quartile + 3 interquartile ranges):
a rule of the data's own spread, so a clean set reports few or none, whatever its feature scale.
"""

from __future__ import annotations

import numpy as np

from hftransfer.auditing.neighbours import Neighbours

FENCE_IQRS = 3.0


def outlier_scores(neighbours: Neighbours) -> np.ndarray:
    return 1.0 - neighbours.similarity.mean(1)


def outlier_rows(scores: np.ndarray) -> tuple[np.ndarray, float]:
    """(rows beyond the fence, most distant first; the fence)."""
    q1, q3 = np.percentile(scores, [25, 75])
    fence = float(q3 + FENCE_IQRS * (q3 - q1))
    rows = np.flatnonzero(scores > fence)
    return rows[np.argsort(-scores[rows], kind="stable")], fence
