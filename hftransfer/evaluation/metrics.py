"""Classification metrics computed with scikit-learn, so they work offline.

``evaluate.load("accuracy")`` fetches a script from the Hub and fails without a network; scikit-learn
computes the same numbers locally.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, precision_recall_fscore_support

from hftransfer.evaluation.multilabel import compute_multilabel_metrics


def classification_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """Accuracy plus macro- and weighted-averaged precision, recall and F1."""
    metrics = {"accuracy": float(accuracy_score(labels, predictions))}
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            labels, predictions, average=average, zero_division=0
        )
        metrics.update(
            {f"precision_{average}": float(precision), f"recall_{average}": float(recall), f"f1_{average}": float(f1)}
        )
    return metrics


def compute_classification_metrics(eval_prediction) -> dict[str, float]:
    """``compute_metrics`` for the Trainer.

    Predictions arrive reduced by ``evaluation.reduce_logits`` (top-k ids then probabilities; column 0 is
    the predicted class) or as bare class ids.
    """
    if np.asarray(eval_prediction.label_ids).ndim == 2:  # multi-hot targets: several labels per example
        return compute_multilabel_metrics(eval_prediction)
    predictions = np.asarray(eval_prediction.predictions)
    predicted = predictions[:, 0] if predictions.ndim == 2 else predictions.reshape(-1)
    return classification_metrics(np.asarray(eval_prediction.label_ids).reshape(-1), predicted.astype(int))


def per_class_scores(labels: np.ndarray, predictions: np.ndarray, label_names: list[str]) -> dict:
    """Precision, recall, F1 and support of each class, by name."""
    report = classification_report(
        labels,
        predictions,
        labels=list(range(len(label_names))),
        target_names=label_names,
        output_dict=True,
        zero_division=0,
    )
    return {name: report[name] for name in label_names}
