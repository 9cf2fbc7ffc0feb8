"""Long-tailed labels: detect them, and either adjust the trained model's logits for the classes' priors (the
default) or weight the training loss by class.

A classifier trained on a long tail learns its training prior: a rare class needs far stronger evidence than a
frequent one to be predicted, so its recall is low, and more so the rarer it is. ``imbalance`` (an option):

- ``logit_adjustment``: after training (and temperature scaling), each class's logit is lowered by the log of its
  share of the training examples (post-hoc logit adjustment, Menon et al., ICLR 2021, with their tau = 1). The
  adjusted softmax is the model's posterior under equal class priors, the Bayes-optimal rule for the mean recall
  over classes; the scores stay calibrated for data whose classes are equally frequent. The shift is folded into
  the output bias, as the temperature is, so every export and ``pipeline`` gives the adjusted scores, and nothing
  in training changes. The prior is the training split's as trained (after ``exclude_file`` and
  ``max_train_samples``); a class train lacks is left unadjusted.
- ``class_weights``: cross-entropy with each class weighted ``examples / (classes * examples of the class)``
  (scikit-learn's "balanced"), so every class weighs the same in the loss.
- ``none``: the model as trained.
- ``auto`` (the default): ``logit_adjustment`` when the training split's imbalance ratio (largest class over
  smallest) is at least ``LONG_TAIL_RATIO``, else ``none``. Multi-label runs keep ``pos_weight`` and their
  per-label thresholds.

Evidence (``benchmarks/defaults.py``, long-tailed noisy TREC and Caltech-101 variants, clean balanced test
splits, 2 seeds) is in docs/training.md.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from hftransfer.data.balance import imbalance_ratio, train_class_counts
from hftransfer.evaluation.calibration import classifier_layers

logger = logging.getLogger("hftransfer")

LONG_TAIL_RATIO = 3.0
ADJUSTMENT_KEY = "hftransfer_prior_adjustment"  # in the saved model's config: what was folded into the bias


def resolve_imbalance(config, data) -> None:
    """Settle ``imbalance: auto`` for this data (recorded with its reason, shown in the plan and card)."""
    if config.transfer.imbalance != "auto":
        return
    if data.streamed:
        config.choose("imbalance", "none", "chosen for this data", "streamed data: its classes are not counted")
        return
    if data.multi_label:
        config.choose("imbalance", "none", "chosen for this data", "multi-label: pos_weight and per-label thresholds")
        return
    ratio = imbalance_ratio(train_class_counts(data))
    if ratio >= LONG_TAIL_RATIO:
        reason = (
            f"a long tail (training imbalance ratio {ratio:.1f} >= {LONG_TAIL_RATIO:g}): rare classes' logits are "
            "raised by their prior after training, for equal recall across classes"
        )
        config.choose("imbalance", "logit_adjustment", "chosen for this data", reason)
    else:
        reason = f"classes close to balanced (training imbalance ratio {ratio:.1f} < {LONG_TAIL_RATIO:g})"
        config.choose("imbalance", "none", "chosen for this data", reason)
    logger.info("imbalance: %s (%s)", config.transfer.imbalance, reason)


def prior_shift(counts: np.ndarray) -> np.ndarray:
    """``log(prior)`` per class, centred over the classes train holds (mean 0, so the biases keep their scale); a
    class train lacks gets 0: its head never saw an example, and dividing by a prior of 0 would make it win."""
    counts = np.asarray(counts, dtype=np.float64)
    held = counts > 0
    shift = np.zeros_like(counts)
    log_prior = np.log(counts[held] / counts.sum())
    shift[held] = log_prior - log_prior.mean()
    return shift


@torch.no_grad()
def adjust_for_priors(config, model, data, head_names: set[str]) -> np.ndarray | None:
    """``imbalance: logit_adjustment``: fold ``-prior_shift`` into the classifier's bias; returns the shift (None
    when not applied, said in the log)."""
    if config.transfer.imbalance != "logit_adjustment" or data.multi_label:
        return None
    layers = [layer for layer in classifier_layers(model, head_names, len(data.label_names)) if layer.bias is not None]
    if not layers:
        logger.warning("logit adjustment skipped: the head has no linear layer with a bias and one output per class")
        return None
    counts = train_class_counts(data)
    shift = prior_shift(counts)
    move_biases(layers, -shift)
    setattr(model.config, ADJUSTMENT_KEY, {"method": "logit_adjustment", "train_counts": counts.tolist()})
    note = (
        f"logit adjustment: each class's logit lowered by its log prior in train ({int(counts.min())} to "
        f"{int(counts.max())} examples per class), so rare classes are predicted as readily as frequent ones; "
        "scores are calibrated for equally frequent classes"
    )
    logger.info(note)
    config.outcomes.append(note)
    return shift


@torch.no_grad()
def undo_prior_adjustment(model, head_names: set[str], num_labels: int) -> bool:
    """Give a saved model back the logits it was trained to (a teacher whose student learns its own priors);
    True when a shift was removed."""
    saved = getattr(model.config, ADJUSTMENT_KEY, None)
    if not saved:
        return False
    layers = [layer for layer in classifier_layers(model, head_names, num_labels) if layer.bias is not None]
    move_biases(layers, prior_shift(np.asarray(saved["train_counts"])))
    delattr(model.config, ADJUSTMENT_KEY)
    return True


def move_biases(layers, delta: np.ndarray) -> None:
    """Add ``delta`` (one value per class) to each layer's output bias."""
    for layer in layers:
        layer.bias.add_(torch.as_tensor(delta, dtype=layer.bias.dtype, device=layer.bias.device))


class ClassWeightedLoss:
    """``compute_loss_func`` for ``imbalance: class_weights``: cross-entropy with per-class weights (label smoothing
    as the run sets it). Normalised like ``WeightedMultiLabelLoss``: the weighted sum over the update's examples
    divided by their count, which is the per-example mean the Trainer expects under gradient accumulation."""

    def __init__(self, weight: torch.Tensor, label_smoothing: float = 0.0):
        self.weight, self.label_smoothing = weight, label_smoothing

    def __call__(self, outputs, labels, num_items_in_batch=None) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        per_example = torch.nn.functional.cross_entropy(
            logits.float(),
            labels.view(-1),
            weight=self.weight.to(logits.device),
            label_smoothing=self.label_smoothing,
            reduction="none",
        )
        return per_example.sum() / (len(per_example) if num_items_in_batch is None else num_items_in_batch)


def class_weighted_loss(config, data) -> ClassWeightedLoss | None:
    """The loss for ``imbalance: class_weights`` (None otherwise)."""
    if config.transfer.imbalance != "class_weights" or data.multi_label:
        return None
    counts = train_class_counts(data)
    weight = counts.sum() / (len(counts) * np.maximum(counts, 1))
    logger.info("class weights: from %.2f to %.2f (balanced: every class weighs the same)", weight.min(), weight.max())
    return ClassWeightedLoss(torch.tensor(weight, dtype=torch.float32), config.training.label_smoothing_factor)
