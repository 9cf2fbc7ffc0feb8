"""Contrastive fine-tuning of the body before ``lp_ft``'s probe: SetFit's idea (Tunstall et al., 2022) in the run's
own Trainer.

With a handful of examples per class, cross-entropy from a probed head moves a sentence encoder little and
overfits fast; SetFit instead trains the body so that examples of one class lie close and others apart (the
cosine of each pair regressed to 1 or 0), then fits a logistic head on the new vectors. SetFit draws 40 pairs per
example and runs each pair through the encoder (TREC-50, 8 per class: 975 steps of 16 pairs, 545 s here). Here
every pair of a batch counts (a batch of 32 holds 496), so a few passes over the examples do the same work: the
batches hold several examples of each class they draw (``per_class``), so that each has partners of its own
class. The pairs of each kind are averaged apart (SetFit's pairs are half positive), so the many negative pairs
of a batch do not drown the few positive ones.

The loss reads the head's input (the pooled sentence vector: ``backbones/sentence_pooling.py``), found by the
same hook as the feature cache; the head itself does not train here (the probe fits it next).
"""

from __future__ import annotations

import dataclasses
import logging
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn
from torch.utils.data import Sampler

from hftransfer.backbones.blocks import head_parameter_names
from hftransfer.data.labels import LABELS, column_values
from hftransfer.engine.trainer import ClassificationTrainer
from hftransfer.strategies.base import training_phase
from hftransfer.strategies.features import head_root

logger = logging.getLogger("hftransfer")

PER_CLASS = 4  # examples of one class drawn together into a batch (each then has PER_CLASS - 1 partners)


class PairCosineLoss(nn.Module):
    """The model with SetFit's loss on its head input: cos(a, b) regressed to 1 for a pair of one class, 0 else."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        _, self.head = head_root(model)
        self.config = SimpleNamespace(problem_type=None)  # what Trainer reads of a model's config

    def forward(self, labels: torch.Tensor, **inputs) -> dict:
        captured: list[torch.Tensor] = []
        handle = self.head.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
        try:
            self.model(**inputs)
        finally:
            handle.remove()
        vectors = nn.functional.normalize(captured[0].float(), dim=-1)
        cosine = vectors @ vectors.T
        same = labels[:, None] == labels[None, :]
        others = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        positive, negative = same & others, ~same
        loss = cosine.new_zeros(())
        if positive.any():
            loss = loss + ((cosine[positive] - 1) ** 2).mean()
        if negative.any():
            loss = loss + (cosine[negative] ** 2).mean()
        return {"loss": loss}


class ClassGroupedOrder(Sampler):
    """Every example once per pass, in groups of ``per_class`` examples of one class, the groups shuffled (a new
    order each pass, from ``seed``)."""

    def __init__(self, labels: np.ndarray, per_class: int, seed: int):
        self.labels, self.per_class, self.seed, self.passes = labels, per_class, seed, 0

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self):
        rng = np.random.default_rng(self.seed + self.passes)
        self.passes += 1
        groups = []
        for label in np.unique(self.labels):
            rows = rng.permutation(np.flatnonzero(self.labels == label))
            groups += [rows[i : i + self.per_class] for i in range(0, len(rows), self.per_class)]
        order = [groups[i] for i in rng.permutation(len(groups))]
        return iter(np.concatenate(order).tolist())


def train_body_on_pairs(ctx, train, epochs: float, learning_rate: float) -> dict:
    """Fine-tune every parameter but the head with the pair loss for ``epochs`` passes over ``train``; returns the
    Trainer's train metrics. Which parameters train is restored afterwards."""
    args, model = ctx.config.training, ctx.model
    head = set(head_parameter_names(model))
    body = {name for name, _ in model.named_parameters() if name not in head}
    with training_phase(model, body, args, "contrastive") as folder:
        pair_args = dataclasses.replace(
            args,
            output_dir=str(folder),
            num_train_epochs=epochs,
            learning_rate=learning_rate,
            eval_strategy="no",
            save_strategy="no",
            load_best_model_at_end=False,
            push_to_hub=False,
            resume_from_checkpoint=None,
            label_smoothing_factor=0.0,
            remove_unused_columns=False,
        )
        labels = np.asarray(column_values(train, LABELS))
        trainer = ClassificationTrainer(
            model=PairCosineLoss(model),
            args=pair_args,
            train_dataset=train,
            data_collator=ctx.trainer.data_collator,
            train_sampler=lambda _dataset, _batch_size: ClassGroupedOrder(labels, PER_CLASS, args.seed),
        )
        logger.info("contrastive fine-tuning of the body on pairs of training examples for %s epochs", epochs)
        return trainer.train().metrics
