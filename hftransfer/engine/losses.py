"""Multi-label losses: where the head starts (label priors), and binary cross-entropy with ``pos_weight``.

A new multi-label head starts at each label's prior: its output bias is the log-odds of the label's frequency in
train (the prior initialisation of Lin et al., "Focal Loss", 2017). From a zero bias every score starts at 0.5,
and Adam moves a bias by about one learning rate per step, so a label seen in 2% of examples needs thousands of
steps just to reach its prior log-odds of -3.9; meanwhile the body's features are bent to lower every score. On
GoEmotions (28 labels, 3,000 comments, MiniLM, 3 epochs) the zero-bias start ended near the constant predictor
(mAP 0.08).

transformers' heads compute plain BCE for ``multi_label_classification``; with ``pos_weight: true`` each label's
positive examples weigh its negatives-to-positives ratio in train (``torch.nn.BCEWithLogitsLoss``'s
``pos_weight``), so a label seen in 1% of examples is not learnt as "always absent". The ratio is capped at
``MAX_POS_WEIGHT``: a label with three positives in 100,000 examples would otherwise dominate every batch.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from hftransfer.data.multilabel import positives_per_label
from hftransfer.evaluation.calibration import classifier_layers

logger = logging.getLogger("hftransfer")

MAX_POS_WEIGHT = 100.0


class WeightedMultiLabelLoss:
    """``compute_loss_func`` for the Trainer: BCE with logits, positives weighted per label."""

    def __init__(self, pos_weight: torch.Tensor):
        self.pos_weight = pos_weight

    def __call__(self, outputs, labels, num_items_in_batch=None) -> torch.Tensor:
        """The mean over every (example, label) entry. In training the Trainer passes how many entries the whole
        update holds (over gradient-accumulation steps and processes): the sum divided by it is that mean, which
        is what the Trainer expects of a ``compute_loss_func`` (it then neither divides by the accumulation
        steps nor lets the processes' average shrink it)."""
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits.float(),
            labels.float(),
            pos_weight=self.pos_weight.to(logits.device),
            reduction="mean" if num_items_in_batch is None else "sum",
        )
        return loss if num_items_in_batch is None else loss / num_items_in_batch


def loss_for(config, data):
    """The Trainer's ``compute_loss_func``: None (the model's own loss) unless multi-label ``pos_weight`` is on."""
    if not (data.multi_label and config.data.pos_weight):
        return None
    train = data.splits["train"]
    positives = positives_per_label(train)
    weight = np.minimum((len(train) - positives) / np.maximum(positives, 1), MAX_POS_WEIGHT)
    logger.info(
        "pos_weight: from %.2f to %.2f per label (negatives / positives in train, capped at %g)",
        weight.min(),
        weight.max(),
        MAX_POS_WEIGHT,
    )
    return WeightedMultiLabelLoss(torch.tensor(weight, dtype=torch.float32))


@torch.no_grad()
def start_at_label_priors(model, plan, data) -> None:
    """Multi-label: set the head's output bias to each label's log-odds in train (see the module docstring)."""
    if not data.multi_label:
        return
    layers = [
        layer for layer in classifier_layers(model, plan.head_names, len(data.label_names)) if layer.bias is not None
    ]
    train = data.splits["train"]
    frequency = np.clip(positives_per_label(train) / len(train), 1e-4, 1 - 1e-4)
    bias = torch.tensor(np.log(frequency / (1 - frequency)), dtype=torch.float32)
    for layer in layers:
        layer.bias.copy_(bias.to(layer.bias.device, layer.bias.dtype))
    if layers:
        logger.info(
            "multi-label head: output biases start at the labels' log-odds in train (%.2f to %.2f)",
            float(bias.min()),
            float(bias.max()),
        )
