"""Which multi-label decision thresholds to keep: 0.5 for every label, one global threshold, or one per label, each
kept only where validation shows it beats the simpler one beyond chance.

Thresholds tuned on a small validation split fit its noise: on a held-out 5-label photo set with 160 validation
examples, per-label thresholds gave test micro-F1 0.860 where a flat 0.5 gave 0.883. So the choice is made on
out-of-fold evidence, as the temperature's is by a likelihood-ratio test: the validation split is cut into
``FOLDS`` folds; each policy is fitted on the other folds and scored on the held-out one, so every example is
predicted by thresholds that never saw it. A more complex policy replaces the simpler one only when its
out-of-fold score (the run's objective: micro- or macro-F1) is higher in at least ``CONFIDENCE`` of paired
bootstrap resamples of the examples (a one-sided test at 5%). The kept policy is then fitted on all of validation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import f1_score

from hftransfer.config.options import THRESHOLD_OBJECTIVES

MIN_POSITIVES = 5
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)
DEFAULT_THRESHOLD = 0.5
POLICIES = ("flat", "global", "per_label")  # simplest first
POLICY_NOTES = {
    "flat": f"{DEFAULT_THRESHOLD} for every label",
    "global": "one threshold for every label, {global_threshold:.2f}, tuned on validation",
    "per_label": f"tuned on validation, per label for labels with at least {MIN_POSITIVES} positives",
}
FOLDS = 5
RESAMPLES = 1000
CONFIDENCE = 0.95


def candidate_thresholds(scores: np.ndarray) -> np.ndarray:
    """The grid, plus the scores' own quantiles: a model whose scores all lie between 0.4 and 0.6 (short training,
    a rare label) needs thresholds between the grid's steps."""
    quantiles = np.quantile(scores, np.linspace(0.02, 0.98, 49))
    return np.unique(np.concatenate([THRESHOLD_GRID, np.round(quantiles, 4)]))


def tune_thresholds(
    targets: np.ndarray, scores: np.ndarray, objective: str = "micro"
) -> tuple[np.ndarray, float, np.ndarray]:
    """(threshold per label, the global threshold, which labels were tuned on their own).

    ``micro``: starting from the global threshold, each label in turn (most frequent first) takes the threshold
    that maximises the micro-F1 of all labels; the result is never below the global threshold's micro-F1 on
    validation. ``macro``: each label takes the threshold that maximises its own F1 (macro-F1's objective; it
    lowers the thresholds of weakly predicted labels, trading precision, and micro-F1, for their recall).
    """
    if objective not in THRESHOLD_OBJECTIVES:
        raise ValueError(f"unknown threshold objective {objective!r}; valid: {', '.join(THRESHOLD_OBJECTIVES)}")
    targets = np.asarray(targets).astype(bool)
    candidates = candidate_thresholds(scores)
    global_f1 = [f1_score(targets, scores >= t, average="micro", zero_division=0) for t in candidates]
    global_threshold = float(candidates[int(np.argmax(global_f1))])
    thresholds = np.full(targets.shape[1], global_threshold)
    support = targets.sum(axis=0)
    tuned = support >= MIN_POSITIVES
    counts = _counts(targets, scores >= thresholds)  # per label: true positives, false positives, false negatives
    for label in sorted(np.flatnonzero(tuned), key=lambda j: -support[j]):
        options = candidate_thresholds(scores[:, label])
        per_option = np.array([_label_counts(targets[:, label], scores[:, label] >= t) for t in options])
        # macro: this label's own F1; micro: the F1 of all labels, whose counts stay but for this label's
        judged = per_option if objective == "macro" else per_option + (counts.sum(axis=0) - counts[label])
        tp, fp, fn = judged.T
        choice = int(np.argmax(2 * tp / np.maximum(2 * tp + fp + fn, 1)))
        thresholds[label] = float(options[choice])
        counts[label] = per_option[choice]
    return thresholds, global_threshold, tuned


def _label_counts(truth: np.ndarray, predicted: np.ndarray) -> tuple[int, int, int]:
    return int((truth & predicted).sum()), int((~truth & predicted).sum()), int((truth & ~predicted).sum())


def _counts(targets: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    return np.array([_label_counts(targets[:, j], predicted[:, j]) for j in range(targets.shape[1])])


@dataclass
class ThresholdChoice:
    policy: str
    out_of_fold: dict[str, float]  # each policy's out-of-fold score
    confidence: dict[str, float]  # how often (bootstrap) each policy beat the one kept before it


def every_policy(targets: np.ndarray, scores: np.ndarray, objective: str) -> dict[str, np.ndarray]:
    """``{policy: each label's threshold}``, fitted on (targets, scores): one tuning serves global and per-label."""
    thresholds, global_threshold, _ = tune_thresholds(targets, scores, objective)
    return {
        "flat": np.full(scores.shape[1], DEFAULT_THRESHOLD),
        "global": np.full(scores.shape[1], global_threshold),
        "per_label": thresholds,
    }


def fitted(policy: str, targets: np.ndarray, scores: np.ndarray, objective: str) -> np.ndarray:
    """Each label's threshold under ``policy``, fitted on (targets, scores)."""
    return every_policy(targets, scores, objective)[policy]


def out_of_fold_predictions(targets: np.ndarray, scores: np.ndarray, objective: str, seed: int = 0) -> dict:
    """``{policy: predicted labels}``, each example's from thresholds fitted on the other folds."""
    fold = np.random.default_rng(seed).permutation(len(scores)) % FOLDS
    predicted = {policy: np.zeros(scores.shape, dtype=bool) for policy in POLICIES}
    for k in range(FOLDS):
        held, fit = fold == k, fold != k
        for policy, thresholds in every_policy(targets[fit], scores[fit], objective).items():
            predicted[policy][held] = scores[held] >= thresholds
    return predicted


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, objective: str) -> np.ndarray:
    """F1 from counts summed over examples (last axis: labels): micro pools the labels, macro averages them."""
    if objective == "micro":
        tp, fp, fn = tp.sum(-1), fp.sum(-1), fn.sum(-1)
        return 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    return (2 * tp / np.maximum(2 * tp + fp + fn, 1)).mean(-1)


def resampled_scores(targets: np.ndarray, predicted: np.ndarray, objective: str, weights: np.ndarray) -> np.ndarray:
    """The objective on each resample of the examples (``weights``: resamples × examples, how often each is drawn)."""
    counts = [(targets & predicted), (~targets & predicted), (targets & ~predicted)]
    return _f1(*(weights @ c.astype(np.float64) for c in counts), objective)


def bootstrap_weights(n: int, seed: int) -> np.ndarray:
    """``RESAMPLES`` draws of n examples with replacement, as counts per example."""
    rows = np.random.default_rng(seed).integers(0, n, size=(RESAMPLES, n))
    weights = np.zeros((RESAMPLES, n))
    np.add.at(weights, (np.arange(RESAMPLES)[:, None], rows), 1)
    return weights


def choose_thresholds(targets: np.ndarray, scores: np.ndarray, objective: str, seed: int = 0) -> ThresholdChoice:
    """The simplest policy that no more complex one beats beyond chance, on out-of-fold evidence."""
    targets = np.asarray(targets).astype(bool)
    predicted = out_of_fold_predictions(targets, scores, objective, seed)
    weights, once = bootstrap_weights(len(scores), seed), np.ones((1, len(scores)))
    resampled = {policy: resampled_scores(targets, predicted[policy], objective, weights) for policy in POLICIES}
    observed = {policy: float(resampled_scores(targets, predicted[policy], objective, once)[0]) for policy in POLICIES}
    kept, confidence = POLICIES[0], {}
    for policy in POLICIES[1:]:
        confidence[policy] = float((resampled[policy] > resampled[kept]).mean())
        if confidence[policy] >= CONFIDENCE:
            kept = policy
    return ThresholdChoice(kept, observed, confidence)
