"""Likely label errors: out-of-fold class probabilities from the frozen features, ranked by confident learning.

cleanlab (Northcutt et al., 2021) does the ranking and estimates how many labels are wrong; what it needs is
good out-of-fold probabilities, and those are made here. Plain cleanlab fits a logistic regression on the
features as they are. Measured better (TREC-50 and Caltech-101 with flipped labels, benchmarks/audit.py):

- standardised features and a strongly regularised regression (C 0.03: noisy labels must not be fitted);
- a second round that leaves out of every fold's fit the examples the first round flagged (their labels are the
  likely wrong ones), so the probabilities of the rest are learnt from cleaner labels;
- averaged with a k-nearest-neighbour vote (k 10, similarity-weighted), which sees local structure a linear model
  misses.

The report lists as many suspects as cleanlab estimates are wrong, from the top of the ranking.

Multi-label sets get one regression per label and cleanlab's multi-label ranking (one round).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

FOLDS = 5
REGULARISATION = 0.03  # LogisticRegression's C on standardised features (0.03 / 0.1 / 1: P@K 0.85 / 0.83 / 0.77)
NEIGHBOURS, SIMILARITY_TEMPERATURE = 10, 0.1


@dataclass
class LabelScores:
    """Per example: ``quality`` (cleanlab's label quality, low = likely wrong), ``flagged`` (in cleanlab's
    estimated set of errors), ``probabilities`` (out of fold) and ``suggested`` (a class id, or multi-hot)."""

    quality: np.ndarray
    flagged: np.ndarray
    probabilities: np.ndarray
    suggested: np.ndarray


def standardised(features: np.ndarray) -> np.ndarray:
    mean, std = features.mean(0), features.std(0)
    return (features - mean) / np.where(std > 1e-8, std, 1.0)


def blend(probabilities: np.ndarray, model: np.ndarray | None, held_out: np.ndarray | None) -> np.ndarray:
    """``probabilities`` averaged with a finished model's on the rows it never trained on (``audit --run``)."""
    if model is None or held_out is None:
        return probabilities
    mixed = probabilities.copy()
    mixed[held_out] = (probabilities[held_out] + model[held_out]) / 2
    return mixed


def score_labels(
    features: np.ndarray, labels: np.ndarray, num_classes: int, seed: int, model=None, held_out=None
) -> LabelScores:
    """Single-label sets: ``labels`` are class ids; ``model``: a finished run's probabilities, used on the rows
    ``held_out`` marks."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    x = standardised(features)
    with warnings.catch_warnings():  # classes smaller than the number of folds: sklearn and cleanlab say so
        warnings.simplefilter("ignore")
        first = regression_probabilities(x, labels, num_classes, seed)
        flagged = find_label_issues(labels, first)
        second = regression_probabilities(x, labels, num_classes, seed, left_out=flagged)
        probabilities = blend((second + neighbour_probabilities(x, labels, num_classes, seed)) / 2, model, held_out)
        quality = get_label_quality_scores(labels, probabilities)
        # cleanlab's estimate of how many labels are wrong, taken from the top of the ranking above (TREC-50, 10%
        # flipped: precision 0.57 / recall 0.96, against 0.40 / 0.82 for its default selection of as many)
        flagged = find_label_issues(labels, probabilities, filter_by="low_self_confidence")
    return LabelScores(quality, flagged, probabilities, probabilities.argmax(1))


def score_multi_labels(features: np.ndarray, targets: np.ndarray, seed: int, model=None, held_out=None) -> LabelScores:
    """Multi-label sets: ``targets`` are multi-hot rows."""
    from cleanlab.filter import find_label_issues
    from cleanlab.multilabel_classification.rank import get_label_quality_scores
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold
    from sklearn.multiclass import OneVsRestClassifier

    x, targets = standardised(features), (targets > 0.5).astype(int)
    probabilities = np.zeros(targets.shape)
    with warnings.catch_warnings():  # a label absent from a fold's fit is predicted as constant, with a warning
        warnings.simplefilter("ignore")
        for fit, held in KFold(FOLDS, shuffle=True, random_state=seed).split(x):
            classifier = OneVsRestClassifier(LogisticRegression(C=REGULARISATION, max_iter=2000))
            probabilities[held] = classifier.fit(x[fit], targets[fit]).predict_proba(x[held])
        probabilities = blend(probabilities, model, held_out)
        given = [np.flatnonzero(row).tolist() for row in targets]
        quality = get_label_quality_scores(given, probabilities)
        flagged = find_label_issues(given, probabilities, multi_label=True)
    return LabelScores(quality, flagged, probabilities, (probabilities >= 0.5).astype(int))


def folds(labels: np.ndarray, seed: int):
    """Stratified folds; fewer than FOLDS when even the largest class is smaller (scikit-learn refuses that)."""
    from sklearn.model_selection import StratifiedKFold

    count = min(FOLDS, int(np.bincount(labels).max()))
    return StratifiedKFold(count, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels)


def regression_probabilities(x, labels, num_classes: int, seed: int, left_out=None) -> np.ndarray:
    """Out-of-fold probabilities of a logistic regression; rows of ``left_out`` are scored but never fitted."""
    from sklearn.linear_model import LogisticRegression

    probabilities = np.zeros((len(labels), num_classes))
    fitted = np.ones(len(labels), dtype=bool) if left_out is None else ~np.asarray(left_out, dtype=bool)
    for fit, held in folds(labels, seed):
        fit = fit[fitted[fit]]
        model = LogisticRegression(C=REGULARISATION, max_iter=2000).fit(x[fit], labels[fit])
        probabilities[np.ix_(held, model.classes_)] = model.predict_proba(x[held])
    return probabilities


def neighbour_probabilities(x, labels, num_classes: int, seed: int) -> np.ndarray:
    """Out-of-fold class votes of the nearest neighbours by cosine similarity, weighted by exp(similarity / t)."""
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    votes = np.full((len(labels), num_classes), 1e-3)
    for fit, held in folds(labels, seed):
        k = min(NEIGHBOURS, len(fit))
        for start in range(0, len(held), 1024):
            rows = held[start : start + 1024]
            similarity = unit[rows] @ unit[fit].T
            nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
            weights = np.exp(np.take_along_axis(similarity, nearest, 1) / SIMILARITY_TEMPERATURE)
            local = np.zeros((len(rows), num_classes))
            np.add.at(local, (np.repeat(np.arange(len(rows)), k), labels[fit][nearest].reshape(-1)), weights.ravel())
            votes[rows] += local / local.sum(1, keepdims=True)
    return votes / votes.sum(1, keepdims=True)
