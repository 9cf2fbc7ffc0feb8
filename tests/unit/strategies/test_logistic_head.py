"""The probe's head fitted as a logistic regression: the model's own Linear gives scikit-learn's probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from hftransfer.strategies.logistic_head import DEFAULT_STRENGTH, choose_strength, fit_logistic_head, single_linear


def blobs(classes: int, per_class: int, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (classes, dim))
    labels = np.repeat(np.arange(classes), per_class)
    return (centres[labels] + rng.normal(0, 1, (len(labels), dim))).astype(np.float32), labels


@pytest.mark.parametrize("classes", [2, 5])
def test_the_linear_head_gives_the_regressions_probabilities(classes):
    x, y = blobs(classes, 12)
    linear = nn.Linear(x.shape[1], classes)
    fitted = fit_logistic_head(linear, x, y, None, seed=0)
    assert fitted is not None and fitted.strength > 0 and "cross-validation" in fitted.chosen_by
    scale = np.linalg.norm(x, axis=1).mean()
    reference = LogisticRegression(C=fitted.strength, max_iter=3000).fit(x / scale, y).predict_proba(x / scale)
    with torch.no_grad():
        ours = torch.softmax(linear(torch.from_numpy(x)), dim=-1).numpy()
    assert np.allclose(ours, reference, atol=1e-4)
    assert (ours.argmax(1) == y).mean() > 0.9 and 0 < fitted.train_loss < 0.7


def test_class_weights_move_the_boundary_towards_the_rare_class():
    x, y = blobs(2, 40, seed=3)
    keep = np.r_[np.arange(40), np.arange(40, 46)]  # 40 of class 0, 6 of class 1
    x, y = x[keep] + np.random.default_rng(1).normal(0, 3, x[keep].shape).astype(np.float32), y[keep]
    plain, weighted = nn.Linear(16, 2), nn.Linear(16, 2)
    fit_logistic_head(plain, x, y, None, seed=0)
    fit_logistic_head(weighted, x, y, np.array([46 / 80, 46 / 12]), seed=0)
    with torch.no_grad():
        rare = [torch.softmax(m(torch.from_numpy(x)), -1)[:, 1].mean().item() for m in (plain, weighted)]
    assert rare[1] > rare[0]


def test_a_class_without_training_examples_leaves_the_head_alone():
    x, y = blobs(3, 5)
    linear = nn.Linear(16, 4)
    before = linear.weight.detach().clone()
    assert fit_logistic_head(linear, x, y, None, seed=0) is None
    assert torch.equal(linear.weight, before)


def test_single_examples_cannot_be_cross_validated():
    x, y = blobs(4, 1)
    strength, reason = choose_strength(x.astype(np.float64), y, None, seed=0)
    assert strength == DEFAULT_STRENGTH and "single example" in reason


def test_only_a_plain_linear_head_is_fitted_in_closed_form():
    linear = nn.Linear(8, 3)
    assert single_linear(linear) is linear
    assert single_linear(nn.Sequential(nn.Dropout(0.1), nn.Flatten(), linear)) is linear
    assert single_linear(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))) is None
    assert single_linear(nn.Sequential(nn.LayerNorm(8), linear)) is None
    assert single_linear(nn.Sequential(linear, nn.Dropout(0.1))) is None
