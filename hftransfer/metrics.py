"""Classification metrics computed with scikit-learn, so they work offline.

``evaluate.load("accuracy")`` fetches a script from the Hub and fails without a network; scikit-learn
computes the same numbers locally.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, precision_recall_fscore_support


def logits_to_predictions(logits, labels):
    """Reduce logits to class ids on the device, batch by batch.

    Passed to the Trainer as ``preprocess_logits_for_metrics`` so evaluation accumulates one integer per
    example instead of every logit, whatever the eval set's size.
    """
    if isinstance(logits, tuple):  # some models return (logits, hidden_states, ...)
        logits = logits[0]
    return logits.argmax(dim=-1)


def classification_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """Accuracy plus macro- and weighted-averaged precision, recall and F1."""
    metrics = {"accuracy": float(accuracy_score(labels, predictions))}
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            labels, predictions, average=average, zero_division=0
        )
        metrics.update({f"precision_{average}": float(precision), f"recall_{average}": float(recall),
                        f"f1_{average}": float(f1)})
    return metrics


def compute_classification_metrics(eval_prediction) -> dict[str, float]:
    """``compute_metrics`` for the Trainer; predictions are already class ids (see logits_to_predictions)."""
    predictions = np.asarray(eval_prediction.predictions).reshape(-1)
    return classification_metrics(np.asarray(eval_prediction.label_ids).reshape(-1), predictions)


def per_class_report(labels: np.ndarray, predictions: np.ndarray, label_names: list[str]) -> dict:
    """Precision, recall, F1 and support per class, and the confusion matrix (rows: true, columns: predicted)."""
    ids = list(range(len(label_names)))
    report = classification_report(
        labels, predictions, labels=ids, target_names=label_names, output_dict=True, zero_division=0
    )
    return {
        "per_class": {name: report[name] for name in label_names},
        "summary": classification_metrics(labels, predictions),
        "confusion_matrix": {
            "labels": label_names,
            "matrix": confusion_matrix(labels, predictions, labels=ids).tolist(),
        },
    }
