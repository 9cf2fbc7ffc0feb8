"""The evaluation report: metrics, top-k accuracy, per-class scores, confusions, worst errors, calibration.

Evaluation keeps, per example, only the top-k class ids and their probabilities (``reduce_logits`` runs on
the accelerator, batch by batch, as the Trainer's ``preprocess_logits_for_metrics``), so memory grows with
``examples x 2k`` numbers, never with ``examples x classes`` logits. Everything in the report derives from
those numbers: top-1 is the prediction, the top-1 probability is the confidence (calibration, worst errors).
The Trainer gathers them across processes with ``gather_for_metrics``, which drops the samples a
distributed sampler repeats to even out the last batch, so each example counts exactly once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import confusion_matrix
from transformers.trainer_utils import EvalPrediction, PredictionOutput

from hftransfer.evaluation.calibration import CALIBRATION_BINS, expected_calibration_error
from hftransfer.evaluation.metrics import classification_metrics, per_class_scores
from hftransfer.evaluation.multilabel import evaluate_multilabel_splits
from hftransfer.files.atomic import write_text_atomically

TOP_K = 5  # ids kept per example (fewer when the model has fewer classes)
WORST_ERRORS = 25
CONFUSED_PAIRS = 10


def is_multi_hot(labels) -> bool:
    """Multi-label targets: a float vector per example (single labels are one integer each)."""
    return labels is not None and labels.ndim == 2 and labels.is_floating_point()


def reduce_logits(logits, labels=None, temperature: float | None = None, shift=None) -> torch.Tensor:
    """``preprocess_logits_for_metrics``: logits ``[B, C]`` -> ``[B, 2k]`` (top-k ids, then their probabilities).

    Ids are carried as floats next to the probabilities (exact below 2**24 classes) so one tensor is gathered.
    With ``temperature`` (a model whose logits were divided by it), ``k`` more columns hold the same classes'
    probabilities before that division, so one pass gives the scores before and after calibration. With ``shift``
    (a model whose logits were lowered by it: ``engine/imbalance.py``), one more column holds the class the model
    predicted before that adjustment.
    """
    if isinstance(logits, tuple):  # some models return (logits, hidden_states, ...)
        logits = logits[0]
    if is_multi_hot(labels):  # multi-label: every label's own sigmoid score (labels x examples numbers)
        return logits.float().sigmoid()
    k = min(TOP_K, logits.shape[-1])
    probabilities = logits.float().softmax(dim=-1)
    top_probs, top_ids = probabilities.topk(k, dim=-1)
    columns = [top_ids.float(), top_probs]
    if temperature is not None:
        columns.append((logits.float() * temperature).softmax(dim=-1).gather(-1, top_ids))
    if shift is not None:
        unadjusted = logits.float() + torch.as_tensor(shift, dtype=torch.float32, device=logits.device)
        columns.append(unadjusted.argmax(dim=-1, keepdim=True).float())
    return torch.cat(columns, dim=-1)


@dataclass
class Predictions:
    """What evaluation kept per example: the true label and the top-k classes with their probabilities."""

    labels: np.ndarray  # [N] int
    top_ids: np.ndarray  # [N, k] int, most probable first
    top_probs: np.ndarray  # [N, k] float

    @classmethod
    def from_reduced(cls, reduced, labels) -> "Predictions":
        reduced = np.asarray(reduced, dtype=np.float64)
        if reduced.ndim == 1:  # bare class ids (no probabilities): confidence unknown
            reduced = np.stack([reduced, np.full_like(reduced, np.nan)], axis=1)
        k = reduced.shape[1] // 2
        return cls(np.asarray(labels).reshape(-1).astype(int), reduced[:, :k].astype(int), reduced[:, k:])

    @property
    def predicted(self) -> np.ndarray:
        return self.top_ids[:, 0]

    @property
    def confidence(self) -> np.ndarray:
        return self.top_probs[:, 0]


def top_k_accuracy(predictions: Predictions, k: int) -> float:
    hits = (predictions.top_ids[:, :k] == predictions.labels[:, None]).any(axis=1)
    return float(hits.mean())


def most_confused_pairs(matrix: np.ndarray, label_names: list[str], limit: int = CONFUSED_PAIRS) -> list[dict]:
    """The off-diagonal cells with the most examples: (true, predicted, count, share of the true class)."""
    off_diagonal = matrix.copy()
    np.fill_diagonal(off_diagonal, 0)
    support = matrix.sum(axis=1)
    flat = np.argsort(off_diagonal, axis=None)[::-1][:limit]
    pairs = []
    for true, predicted in zip(*np.unravel_index(flat, matrix.shape)):
        count = int(off_diagonal[true, predicted])
        if count == 0:
            break
        pairs.append(
            {
                "true": label_names[true],
                "predicted": label_names[predicted],
                "count": count,
                "share_of_true": count / int(support[true]),
            }
        )
    return pairs


def worst_errors(
    predictions: Predictions, label_names: list[str], examples: list[str] | None, limit: int = WORST_ERRORS
) -> list[dict]:
    """Misclassified examples, the most confidently wrong first."""
    wrong = np.flatnonzero(predictions.predicted != predictions.labels)
    confidence = np.nan_to_num(predictions.confidence[wrong], nan=0.0)
    order = wrong[np.argsort(-confidence, kind="stable")][:limit]
    return [
        {
            "index": int(i),
            "example": examples[i] if examples is not None else None,
            "true": label_names[predictions.labels[i]],
            "predicted": label_names[predictions.predicted[i]],
            "confidence": _finite(predictions.confidence[i]),
        }
        for i in order
    ]


def build_report(
    predictions: Predictions,
    label_names: list[str],
    examples: list[str] | None = None,
    top_ks: tuple[int, ...] = (1, 5),
    loss: float | None = None,
) -> dict:
    """Everything the eval report holds for one split, as plain JSON-ready values."""
    labels, predicted = predictions.labels, predictions.predicted
    ids = list(range(len(label_names)))
    matrix = confusion_matrix(labels, predicted, labels=ids)
    summary = classification_metrics(labels, predicted)
    for k in top_ks:
        if 1 < k <= predictions.top_ids.shape[1] and k < len(label_names):
            summary[f"top_{k}_accuracy"] = top_k_accuracy(predictions, k)
    calibration = None
    if not np.isnan(predictions.confidence).any():
        ece, bins = expected_calibration_error(predictions.confidence, predicted == labels)
        summary["expected_calibration_error"] = ece
        calibration = {"bins": bins, "num_bins": CALIBRATION_BINS}
    if loss is not None:
        summary["loss"] = float(loss)
    per_class = per_class_scores(labels, predicted, label_names)
    weakest = weakest_classes(per_class)
    if weakest:
        summary["worst_class_recall"] = weakest[0]["recall"]
    return {
        "num_examples": int(len(labels)),
        "summary": summary,
        "weakest_classes": weakest,
        "per_class": per_class,
        "confusion_matrix": {"labels": label_names, "matrix": matrix.tolist()},
        "most_confused": most_confused_pairs(matrix, label_names),
        "worst_errors": worst_errors(predictions, label_names, examples),
        "calibration": calibration,
    }


WEAKEST_SHOWN = 3


def weakest_classes(per_class: dict, limit: int = WEAKEST_SHOWN) -> list[dict]:
    """The classes with the lowest recall (among those the split holds), lowest first."""
    held = [(name, scores) for name, scores in per_class.items() if scores["support"] > 0]
    held.sort(key=lambda item: (item[1]["recall"], item[1]["support"]))
    return [
        {"class": name, "recall": float(scores["recall"]), "support": int(scores["support"])}
        for name, scores in held[:limit]
    ]


def _finite(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


REPORT_FILE = "eval_report.json"
CURVES_FILE = "training_curves.png"
SPLIT_PREFIXES = {"validation": "eval", "test": "test"}


def confusion_png_name(split: str) -> str:
    return f"confusion_matrix_{split}.png"


def pr_png_name(split: str) -> str:
    return f"pr_curves_{split}.png"


def evaluate_splits(
    trainer,
    prepared: dict,
    data,
    task,
    splits=("validation", "test"),
    temperature: float | None = None,
    tune_thresholds: str | None = None,
    logits_read: dict | None = None,
    shift=None,
) -> tuple[dict, dict]:
    """Predict each split once; returns (Trainer-style metrics ``eval_*``/``test_*``, report per split).

    ``tune_thresholds``: multi-label, fit the decision thresholds on validation for this objective (after
    training; ``micro`` or ``macro``).

    ``temperature``: the model was calibrated by dividing its logits by it; each report then also holds the
    calibration before (ECE and reliability table), from the same pass.

    ``logits_read``: ``{split: (logits before temperature, labels)}`` already read from this model (calibration
    reads the validation split's): those splits are scored from them, not predicted again.

    ``shift``: the model's logits were lowered by it after training (logit adjustment); each report then also
    holds the scores the model had before, from the same pass (``before_adjustment``).
    """
    if data.multi_label:  # scores per label and decision thresholds (evaluation/multilabel.py)
        return evaluate_multilabel_splits(trainer, prepared, data, task, splits, tune=tune_thresholds)
    metrics, reports = {}, {}
    saved = trainer.preprocess_logits_for_metrics
    if temperature is not None or shift is not None:
        trainer.preprocess_logits_for_metrics = partial(reduce_logits, temperature=temperature, shift=shift)
    try:
        for split in (s for s in splits if s in prepared):
            prefix = SPLIT_PREFIXES.get(split, split)
            if split in (logits_read or {}):  # read already (calibration's pass): scored, not predicted again
                prediction = prediction_from_logits(trainer, *logits_read[split], prefix, temperature, shift)
            else:
                prediction = trainer.predict(prepared[split], metric_key_prefix=prefix)
            examples = task.describe_examples(data, split) if task.describe_examples else None
            report = report_of(prediction, data.label_names, examples, prefix, temperature, shift)
            for key in SUMMARY_METRICS:
                if report["summary"].get(key) is not None:
                    prediction.metrics[f"{prefix}_{key}"] = report["summary"][key]
            metrics.update(prediction.metrics)
            reports[split] = report
    finally:
        trainer.preprocess_logits_for_metrics = saved
    return metrics, reports


def report_of(prediction, label_names: list[str], examples, prefix: str, temperature, shift) -> dict:
    """One split's report from its reduced predictions (columns as ``reduce_logits`` wrote them)."""
    reduced = np.asarray(prediction.predictions)
    if shift is not None:
        reduced, unadjusted = reduced[:, :-1], reduced[:, -1].astype(int)
    k = reduced.shape[1] // (3 if temperature is not None else 2)
    report = build_report(
        Predictions.from_reduced(reduced[:, : 2 * k], prediction.label_ids),
        label_names,
        examples,
        loss=prediction.metrics.get(f"{prefix}_loss"),
    )
    if temperature is not None:
        before = Predictions.from_reduced(
            np.concatenate([reduced[:, :k], reduced[:, 2 * k :]], axis=1), prediction.label_ids
        )
        add_calibration_before(report, before, temperature)
    if shift is not None:
        add_scores_before_adjustment(report, prediction.label_ids, unadjusted, label_names)
    return report


# the report's figures that also go into the run's metrics (``eval_*``, ``test_*``)
SUMMARY_METRICS = (
    "top_5_accuracy",
    "expected_calibration_error",
    "expected_calibration_error_before",
    "worst_class_recall",
    "accuracy_before_adjustment",
    "f1_macro_before_adjustment",
    "worst_class_recall_before_adjustment",
)


def prediction_from_logits(
    trainer, logits: np.ndarray, labels: np.ndarray, prefix: str, temperature: float | None, shift=None
) -> PredictionOutput:
    """What ``trainer.predict`` returns for a split whose logits (before ``temperature`` and ``shift``) are known:
    the reduced predictions, the task's metrics and the loss the Trainer reports (the model's cross-entropy, label
    smoothing included), on the logits the calibrated (and adjusted) model gives."""
    scaled = torch.from_numpy(np.asarray(logits, dtype=np.float32)) / (temperature or 1.0)
    if shift is not None:
        scaled = scaled - torch.as_tensor(shift, dtype=torch.float32)
    reduced = reduce_logits(scaled, temperature=temperature, shift=shift).numpy()
    metrics = trainer.compute_metrics(EvalPrediction(predictions=reduced, label_ids=labels))
    loss = torch.nn.functional.cross_entropy(
        scaled,
        torch.from_numpy(np.asarray(labels, dtype=np.int64)),
        label_smoothing=trainer.args.label_smoothing_factor,
    )
    metrics = {f"{prefix}_{key}": value for key, value in {"loss": float(loss), **metrics}.items()}
    return PredictionOutput(predictions=reduced, label_ids=labels, metrics=metrics)


def add_scores_before_adjustment(report: dict, labels, unadjusted: np.ndarray, label_names: list[str]) -> None:
    """The accuracy, macro-F1 and worst class recall the model had before its logits were adjusted for the
    classes' priors (the trade the adjustment made: rare classes' recall against frequent ones' precision)."""
    labels = np.asarray(labels).reshape(-1).astype(int)
    before = classification_metrics(labels, unadjusted)
    weakest = weakest_classes(per_class_scores(labels, unadjusted, label_names))
    report["summary"]["accuracy_before_adjustment"] = before["accuracy"]
    report["summary"]["f1_macro_before_adjustment"] = before["f1_macro"]
    if weakest:
        report["summary"]["worst_class_recall_before_adjustment"] = weakest[0]["recall"]


def add_calibration_before(report: dict, before: Predictions, temperature: float) -> None:
    """The temperature and the ECE (with its reliability table) the scores had before it was folded in."""
    ece, bins = expected_calibration_error(before.confidence, before.predicted == before.labels)
    report["temperature"] = temperature
    report["summary"]["expected_calibration_error_before"] = ece
    report["calibration_before"] = {"bins": bins, "num_bins": CALIBRATION_BINS}


def save_eval_outputs(
    out_dir, reports: dict, title: str, log_history: list | None = None, metric: str | None = None
) -> list[Path]:
    """``eval_report.json``, one confusion-matrix (multi-label: precision-recall) PNG per split and the training
    curves, each written whole."""
    from hftransfer.evaluation.plots import plot_confusion_matrix, plot_pr_curves, plot_training_curves

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for split, report in reports.items():
        if report.get("multi_label"):  # no confusion matrix: a precision-recall curve per frequent label
            written.append(
                plot_pr_curves(
                    report["pr_curves"],
                    out / pr_png_name(split),
                    f"{title} · {split} ({report['num_examples']} examples)",
                )
            )
            continue
        matrix = report["confusion_matrix"]
        written.append(
            plot_confusion_matrix(
                matrix["matrix"],
                matrix["labels"],
                out / confusion_png_name(split),
                f"{title} · {split} ({report['num_examples']} examples)",
            )
        )
    if log_history and metric:
        curves = plot_training_curves(log_history, metric, out / CURVES_FILE)
        if curves:
            written.append(curves)
    written.append(write_json_atomically(out / REPORT_FILE, reports))
    return written


def write_json_atomically(path: Path, payload) -> Path:
    return write_text_atomically(path, json.dumps(payload, indent=2))
