"""PNG figures for the eval report: the confusion matrix and the training curves (matplotlib, no display)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hftransfer.files.atomic import write_atomically

DPI = 100
ANNOTATE_UP_TO = 20  # classes; beyond that the counts in the cells would not be legible
MAX_CLASSES_SHOWN = 100  # beyond that, the classes with the most errors (the rest are near-perfect anyway)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: works on servers without a display
    import matplotlib.pyplot as plt

    return plt


def confusion_figure_size(num_classes: int) -> tuple[float, float]:
    """Inches: about a quarter inch per class so every label stays legible, from 6 up to 36 inches."""
    side = float(np.clip(2.5 + 0.3 * num_classes, 6.0, 36.0))
    return side + 1.5, side  # extra width for the colour bar


def order_by_confusion(matrix: np.ndarray) -> np.ndarray:
    """A class order that puts classes confused with each other next to each other.

    Hierarchical clustering (average linkage, optimal leaf order) on the symmetrised row-normalised
    confusions; with no confusion at all the original order is kept.
    """
    n = len(matrix)
    if n <= 2:
        return np.arange(n)
    from scipy.cluster.hierarchy import leaves_list, linkage, optimal_leaf_ordering
    from scipy.spatial.distance import squareform

    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    similarity = (rates + rates.T) / 2
    np.fill_diagonal(similarity, 0)
    if not similarity.any():
        return np.arange(n)
    distance = 1 - similarity / similarity.max()
    np.fill_diagonal(distance, 0)
    condensed = squareform(distance, checks=False)
    tree = optimal_leaf_ordering(linkage(condensed, method="average"), condensed)
    return leaves_list(tree)


def plot_confusion_matrix(matrix, label_names: list[str], path: str | os.PathLike, title: str) -> Path:
    """Row-normalised confusion matrix (each row: where the examples of one true class went), ordered."""
    plt = _pyplot()
    matrix = np.asarray(matrix, dtype=float)
    names = list(label_names)
    if len(names) > MAX_CLASSES_SHOWN:
        errors = matrix.sum(axis=1) - np.diag(matrix) + matrix.sum(axis=0) - np.diag(matrix)
        keep = np.sort(np.argsort(-errors, kind="stable")[:MAX_CLASSES_SHOWN])
        matrix, names = matrix[np.ix_(keep, keep)], [names[i] for i in keep]
        title += f" ({MAX_CLASSES_SHOWN} of {len(label_names)} classes, most errors)"
    order = order_by_confusion(matrix)
    matrix, names = matrix[np.ix_(order, order)], [names[i] for i in order]
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    n = len(names)
    font = float(np.clip(14 - 0.1 * n, 6, 11))
    fig, ax = plt.subplots(figsize=confusion_figure_size(n), dpi=DPI)
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(n), [_shorten(x) for x in names], rotation=90, fontsize=font)
    ax.set_yticks(range(n), [_shorten(x) for x in names], fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= ANNOTATE_UP_TO:
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                ax.text(
                    j,
                    i,
                    f"{int(count)}\n{rates[i, j]:.0%}",
                    ha="center",
                    va="center",
                    fontsize=font - 1,
                    color="white" if rates[i, j] > 0.5 else "black",
                )
    fig.tight_layout()  # keeps the figure size (unlike bbox_inches="tight"), fits labels and colour bar
    return _save(fig, path)


def plot_training_curves(log_history: list[dict], metric: str, path: str | os.PathLike) -> Path | None:
    """Loss (training steps and evaluations) and the selection metric per evaluation; None without history."""
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    evals = [e for e in log_history if "eval_loss" in e]
    if not train and not evals:
        return None
    plt = _pyplot()
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=DPI)
    if train:
        loss_ax.plot(*zip(*train), label="train loss", linewidth=1)
    if evals:
        loss_ax.plot([e["step"] for e in evals], [e["eval_loss"] for e in evals], "o-", label="validation loss")
    loss_ax.set_xlabel("step")
    loss_ax.set_title("loss")
    loss_ax.legend()
    key = metric if metric.startswith("eval_") else f"eval_{metric}"
    points = [(e.get("epoch", e["step"]), e[key]) for e in evals if key in e]
    if points:
        metric_ax.plot(*zip(*points), "o-")
    metric_ax.set_xlabel("epoch")
    metric_ax.set_title(f"validation {key.removeprefix('eval_')}")
    for ax in (loss_ax, metric_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _shorten(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _save(fig, path) -> Path:
    plt = _pyplot()
    try:
        return write_atomically(path, lambda partial: fig.savefig(partial, format="png", dpi=DPI))  # fixed size
    finally:
        plt.close(fig)


def plot_pr_curves(curves: list[dict], path: str | os.PathLike, title: str) -> Path:
    """Multi-label: the precision-recall curve of each of the most frequent labels (``multilabel.pr_curves``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5.5))
    for curve in curves:
        ax.step(curve["recall"], curve["precision"], where="post", label=f"{curve['label']} ({curve['support']})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    ax.legend(title="label (positives)", fontsize=8, loc="lower left")
    fig.tight_layout()
    return _save(fig, path)
