"""Losses the models do not compute themselves: multi-label binary cross-entropy with ``pos_weight``.

transformers' heads compute plain BCE for ``multi_label_classification``; with ``pos_weight: true`` each label's
positive examples weigh its negatives-to-positives ratio in train (``torch.nn.BCEWithLogitsLoss``'s
``pos_weight``), so a label seen in 1% of examples is not learnt as "always absent". The ratio is capped at
``MAX_POS_WEIGHT``: a label with three positives in 100,000 examples would otherwise dominate every batch.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from hftransfer.data.labels import LABELS

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
            logits.float(), labels.float(), pos_weight=self.pos_weight.to(logits.device),
            reduction="mean" if num_items_in_batch is None else "sum")
        return loss if num_items_in_batch is None else loss / num_items_in_batch


def loss_for(config, data):
    """The Trainer's ``compute_loss_func``: None (the model's own loss) unless multi-label ``pos_weight`` is on."""
    if not (data.multi_label and config.data.pos_weight):
        return None
    targets = np.asarray(data.splits["train"][LABELS], dtype=np.float64)
    positives = targets.sum(axis=0)
    weight = np.minimum((len(targets) - positives) / np.maximum(positives, 1), MAX_POS_WEIGHT)
    logger.info("pos_weight: from %.2f to %.2f per label (negatives / positives in train, capped at %g)",
                weight.min(), weight.max(), MAX_POS_WEIGHT)
    return WeightedMultiLabelLoss(torch.tensor(weight, dtype=torch.float32))
