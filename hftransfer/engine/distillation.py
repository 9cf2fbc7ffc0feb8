"""Knowledge distillation in the Trainer: the student learns the teacher's soft targets beside the labels.

The loss is ``alpha * T² * KL(teacher_T || student_T) + (1 - alpha) * the usual loss on the labels`` (Hinton et al.,
2015), where ``_T`` is the softmax at temperature ``T``; ``T²`` keeps the soft term's gradients the size of the hard
term's whatever the temperature. Multi-label models match each label's sigmoid at ``T`` with binary cross-entropy.
The teacher runs on each training batch as the student sees it (the same augmented images), in evaluation mode and
without gradients; evaluation batches are scored on the labels alone, as in any run, so the best checkpoint is
chosen by the same metric.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hftransfer.engine.trainer import TransferTrainer


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float, multi_label: bool, reduction="mean"
):
    """The soft-target term, ``T²``-scaled; ``reduction="sum"`` sums over entries (the caller normalises)."""
    s, t = student.float() / temperature, teacher.float() / temperature
    if multi_label:
        loss = F.binary_cross_entropy_with_logits(s, torch.sigmoid(t), reduction=reduction)
    else:
        loss = F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="sum")
        loss = loss / len(student) if reduction == "mean" else loss
    return loss * temperature**2


class DistillationTrainer(TransferTrainer):
    """``TransferTrainer`` whose training loss mixes the teacher's soft targets in (``alpha``, ``temperature``)."""

    def __init__(self, *args, teacher: torch.nn.Module, temperature: float, alpha: float, multi_label: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = teacher.eval().requires_grad_(False).to(self.args.device)  # once, not every step
        self.temperature, self.alpha, self.multi_label = temperature, alpha, multi_label

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:  # evaluation: the labels alone, as every run is scored
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        hard, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        logits = outputs["logits"]
        with torch.no_grad():
            taught = self.teacher(**{k: v for k, v in inputs.items() if k != "labels"}).logits
        if self.compute_loss_func is not None and num_items_in_batch is not None:
            # the hard loss is a sum over the whole update's entries divided by their count (engine/losses.py);
            # the soft one is normalised the same way, or it would weigh more with more accumulation steps
            soft = distillation_loss(logits, taught, self.temperature, self.multi_label, "sum") / num_items_in_batch
        else:
            soft = distillation_loss(logits, taught, self.temperature, self.multi_label)
        loss = self.alpha * soft + (1 - self.alpha) * hard
        return (loss, outputs) if return_outputs else loss
