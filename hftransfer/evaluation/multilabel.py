"""Multi-label evaluation: decision thresholds tuned on validation, metrics and the report.

A multi-label model scores each label on its own (a sigmoid per label); a label is predicted when its score
reaches the label's threshold. 0.5 suits a label only when its score is calibrated and its classes balanced,
which rare labels never are. So the thresholds are tuned on validation: first one global threshold, the one that
maximises micro-F1 over all labels; then each label with at least ``MIN_POSITIVES`` positive validation examples
gets its own (among ``THRESHOLD_GRID`` and 49 quantiles of its scores: coarse on purpose, as a threshold fitted
exactly to a handful of positives is noise), chosen for the run's ``threshold_objective``: ``micro`` (the
default) maximises the micro-F1 of all labels, ``macro`` each label's own F1. Rarer labels keep the global
threshold. GoEmotions (28 labels, MiniLM on 3,000 comments), test micro-F1 / macro-F1: 0.5 for every label
0.456 / 0.147; ``micro`` 0.517 / 0.292; ``macro`` 0.385 / 0.332. The thresholds are saved in the model's
``config.json`` (``label_thresholds``) and used by ``hftransfer predict`` and ``eval``. Which thresholds are kept
(0.5 for every label, one global, or per label) is decided on out-of-fold evidence (``thresholds.py``): a tuned
threshold is kept only where it beats the simpler choice beyond chance, so a small validation split keeps 0.5.

Metrics (scikit-learn): micro, macro and samples averaged precision/recall/F1, subset accuracy (every label
right), Hamming loss, and mAP (mean over labels of average precision: threshold-free, so it ranks checkpoints
during training, before any threshold is tuned). Calibration: the ECE of the sigmoid scores over every (example,
label) pair and per label (no temperature is fitted: one softmax temperature does not apply to sigmoids).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    hamming_loss,
    precision_recall_curve,
    precision_recall_fscore_support,
)

from hftransfer.config.options import THRESHOLD_OBJECTIVES
from hftransfer.evaluation.calibration import CALIBRATION_BINS, expected_calibration_error
from hftransfer.evaluation.thresholds import DEFAULT_THRESHOLD, POLICY_NOTES, choose_thresholds, fitted

WORST_ERRORS = 25
PR_CURVES = 6  # labels shown in the precision-recall figure (the most frequent)


def mean_average_precision(targets: np.ndarray, scores: np.ndarray) -> float:
    """Mean over the labels that have a positive example of their average precision (threshold-free)."""
    present = targets.sum(axis=0) > 0
    if not present.any():
        return float("nan")
    return float(average_precision_score(targets[:, present], scores[:, present], average="macro"))


def multilabel_metrics(targets: np.ndarray, scores: np.ndarray, thresholds) -> dict[str, float]:
    """Every summary metric of the module docstring, at ``thresholds`` (one per label, or one for all)."""
    targets = np.asarray(targets).astype(int)
    predicted = (np.asarray(scores) >= np.asarray(thresholds)).astype(int)
    metrics = {
        "subset_accuracy": float(accuracy_score(targets, predicted)),
        "hamming_loss": float(hamming_loss(targets, predicted)),
        "map": mean_average_precision(targets, scores),
    }
    for average in ("micro", "macro", "samples"):
        precision, recall, f1, _ = precision_recall_fscore_support(targets, predicted, average=average, zero_division=0)
        metrics.update(
            {f"precision_{average}": float(precision), f"recall_{average}": float(recall), f"f1_{average}": float(f1)}
        )
    return metrics


def compute_multilabel_metrics(eval_prediction) -> dict[str, float]:
    """``compute_metrics`` during training: scores arrive as sigmoids (``reduce_logits``), judged at 0.5."""
    scores = np.asarray(eval_prediction.predictions, dtype=np.float64)
    return multilabel_metrics(np.asarray(eval_prediction.label_ids), scores, DEFAULT_THRESHOLD)


def per_label_table(targets: np.ndarray, scores: np.ndarray, thresholds: np.ndarray, names: list[str]) -> dict:
    """Precision, recall, F1, support, average precision and threshold of each label, by name."""
    targets = np.asarray(targets).astype(int)
    predicted = (scores >= thresholds).astype(int)
    precision, recall, f1, support = precision_recall_fscore_support(targets, predicted, average=None, zero_division=0)
    table = {}
    for i, name in enumerate(names):
        ap = average_precision_score(targets[:, i], scores[:, i]) if support[i] else None
        table[name] = {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1-score": float(f1[i]),
            "support": int(support[i]),
            "average_precision": None if ap is None else float(ap),
            "threshold": float(thresholds[i]),
        }
    return table


def worst_errors(
    targets: np.ndarray,
    scores: np.ndarray,
    thresholds: np.ndarray,
    names: list[str],
    examples: list[str] | None,
    limit: int = WORST_ERRORS,
) -> list[dict]:
    """The examples with the most confident mistakes: missed labels (low score on a true label) and spurious
    ones (high score on a wrong one), ordered by how far the score was on the wrong side of the threshold."""
    targets = np.asarray(targets).astype(bool)
    predicted = scores >= thresholds
    margin = np.where(targets & ~predicted, thresholds - scores, 0) + np.where(
        ~targets & predicted, scores - thresholds, 0
    )
    worst = np.argsort(-margin.max(axis=1), kind="stable")[:limit]
    rows = []
    for i in worst:
        if margin[i].max() <= 0:
            break
        rows.append(
            {
                "example": examples[i] if examples else int(i),
                "true": [names[j] for j in np.flatnonzero(targets[i])],
                "missed": [names[j] for j in np.flatnonzero(targets[i] & ~predicted[i])],
                "spurious": [names[j] for j in np.flatnonzero(~targets[i] & predicted[i])],
                "scores": {names[j]: round(float(scores[i, j]), 4) for j in np.flatnonzero(targets[i] | predicted[i])},
            }
        )
    return rows


def pr_curves(targets: np.ndarray, scores: np.ndarray, names: list[str], limit: int = PR_CURVES) -> list[dict]:
    """Precision-recall curves of the most frequent labels (the figure's data)."""
    support = np.asarray(targets).sum(axis=0)
    curves = []
    for i in np.argsort(-support, kind="stable")[:limit]:
        if support[i] == 0:
            continue
        precision, recall, _ = precision_recall_curve(np.asarray(targets)[:, i].astype(int), scores[:, i])
        curves.append(
            {"label": names[i], "support": int(support[i]), "precision": precision.tolist(), "recall": recall.tolist()}
        )
    return curves


def label_calibration(targets: np.ndarray, scores: np.ndarray, names: list[str]) -> dict:
    """How far each label's sigmoid scores are from its hit rate: the ECE over every (example, label) score, its
    reliability table, and each label's own ECE (a score of 0.8 should carry the label 80% of the time)."""
    targets = np.asarray(targets, dtype=float)
    ece, bins = expected_calibration_error(scores.reshape(-1), targets.reshape(-1))
    per_label = {name: expected_calibration_error(scores[:, i], targets[:, i])[0] for i, name in enumerate(names)}
    return {"ece": ece, "bins": bins, "num_bins": CALIBRATION_BINS, "per_label_ece": per_label}


def build_multilabel_report(
    targets: np.ndarray,
    scores: np.ndarray,
    names: list[str],
    thresholds: np.ndarray,
    examples: list[str] | None = None,
    loss: float | None = None,
) -> dict:
    """Everything the eval report holds for one multi-label split, as plain JSON-ready values."""
    summary = multilabel_metrics(targets, scores, thresholds)
    calibration = label_calibration(targets, scores, names)
    summary["expected_calibration_error"] = calibration["ece"]
    summary["f1_micro_at_0.5"] = float(
        f1_score(np.asarray(targets).astype(int), (scores >= 0.5).astype(int), average="micro", zero_division=0)
    )
    if loss is not None:
        summary["loss"] = float(loss)
    return {
        "num_examples": int(len(targets)),
        "multi_label": True,
        "summary": summary,
        "per_label": per_label_table(targets, scores, thresholds, names),
        "worst_errors": worst_errors(targets, scores, thresholds, names, examples),
        "pr_curves": pr_curves(targets, scores, names),
        "calibration": calibration,
    }


def constant_baseline(train_targets: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """The best predictor that ignores its input, for comparison: it predicts, for every example, the labels that
    maximise micro-F1 when predicted always (taken from train's label frequencies, most frequent first)."""
    order = np.argsort(-np.asarray(train_targets).sum(axis=0), kind="stable")
    targets = np.asarray(targets).astype(int)
    best = {"f1_micro": 0.0, "labels": []}
    for size in range(1, len(order) + 1):
        predicted = np.zeros_like(targets)
        predicted[:, order[:size]] = 1
        f1 = float(f1_score(targets, predicted, average="micro", zero_division=0))
        if f1 > best["f1_micro"]:
            best = {"f1_micro": f1, "labels": order[:size].tolist()}
    return best


THRESHOLDS_KEY = "label_thresholds"  # in the model's config.json: {label name: threshold}


def saved_thresholds(model_config, names: list[str]) -> np.ndarray | None:
    """The thresholds a trained model carries in its config, a ``PretrainedConfig`` or config.json's dict (None
    when it has none; a label it does not list gets ``DEFAULT_THRESHOLD``)."""
    saved = (
        model_config.get(THRESHOLDS_KEY)
        if isinstance(model_config, dict)
        else getattr(model_config, THRESHOLDS_KEY, None)
    )
    if not saved:
        return None
    return np.asarray([float(saved.get(name, DEFAULT_THRESHOLD)) for name in names])


def evaluate_multilabel_splits(
    trainer, prepared: dict, data, task, splits=("validation", "test"), tune: str | None = None
) -> tuple[dict, dict]:
    """Predict each split once; returns (metrics ``eval_*``/``test_*`` at the thresholds, report per split).

    ``tune``: a threshold objective (after training): fit the thresholds on the validation split's scores and
    store them in the model's config; None: the model's own thresholds (evaluating a trained model).
    """
    predictions = {
        split: trainer.predict(prepared[split], metric_key_prefix=SPLIT_PREFIX.get(split, split))
        for split in splits
        if split in prepared
    }
    names = data.label_names
    thresholds, note = saved_thresholds(trainer.model.config, names), "the model's own"
    if tune or thresholds is None:
        thresholds, note = _fit_thresholds(
            trainer.model.config, predictions.get("validation"), names, tune or THRESHOLD_OBJECTIVES[0]
        )
    metrics, reports = {}, {}
    for split, prediction in predictions.items():
        prefix = SPLIT_PREFIX.get(split, split)
        targets, scores = np.asarray(prediction.label_ids), np.asarray(prediction.predictions, dtype=np.float64)
        examples = task.describe_examples(data, split) if task.describe_examples else None
        report = build_multilabel_report(
            targets, scores, names, thresholds, examples, loss=prediction.metrics.get(f"{prefix}_loss")
        )
        report["thresholds"] = note
        metrics.update(prediction.metrics)
        metrics.update({f"{prefix}_{key}": value for key, value in report["summary"].items() if key != "loss"})
        reports[split] = report
    return metrics, reports


SPLIT_PREFIX = {"validation": "eval", "test": "test"}


def _fit_thresholds(model_config, validation, names: list[str], objective: str) -> tuple[np.ndarray, str]:
    if validation is None:
        thresholds = np.full(len(names), DEFAULT_THRESHOLD)
        note = f"{DEFAULT_THRESHOLD} for every label (no validation split)"
    else:
        targets = np.asarray(validation.label_ids).astype(bool)
        scores = np.asarray(validation.predictions, dtype=np.float64)
        choice = choose_thresholds(targets, scores, objective)
        thresholds = fitted(choice.policy, targets, scores, objective)
        shown = ", ".join(f"{policy} {value:.3f}" for policy, value in choice.out_of_fold.items())
        note = (
            f"{POLICY_NOTES[choice.policy].format(global_threshold=thresholds.max())}: out-of-fold {objective}-F1 on "
            f"validation {shown}; a more complex choice is kept only when it beats the simpler one in at least 95% "
            "of bootstrap resamples"
        )
    setattr(model_config, THRESHOLDS_KEY, {name: float(t) for name, t in zip(names, thresholds)})
    return thresholds, note
