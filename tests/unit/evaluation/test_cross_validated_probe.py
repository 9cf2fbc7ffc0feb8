"""auto's probe measured by cross-validation when the validation split is too small to tell anything."""

from __future__ import annotations

import numpy as np

from hftransfer.evaluation.transferability import cross_validated_probe_accuracy


def blobs(spread: float, per_class=(6, 6, 6, 1)):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(len(per_class), 16)) * 3
    features = np.concatenate([centres[c] + spread * rng.normal(size=(n, 16)) for c, n in enumerate(per_class)])
    labels = np.concatenate([[c] * n for c, n in enumerate(per_class)])
    return features, labels


def test_separated_classes_score_high_and_mixed_ones_near_chance():
    separated, scored = cross_validated_probe_accuracy(*blobs(0.1))
    mixed, _ = cross_validated_probe_accuracy(*blobs(30.0))
    assert separated == 1.0
    assert mixed < 0.7
    assert scored == 18  # the class with a single example cannot be held out and trained on at once
