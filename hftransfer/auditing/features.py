"""The examples' vectors the audit compares: one per example, from the frozen backbone, every split.

Images: the head's input (the pooled backbone features), through the feature cache ``rank`` and ``auto`` use.
Token sequences: the mean of the last hidden states over the real tokens. A text classifier's head reads a pooler
(the first token, a dense layer, tanh) that the pretrained checkpoint never trained for sentence similarity;
sentence encoders such as all-MiniLM are trained for the mean. On TREC-50 with 10% flipped labels the mean made
the label-issue ranking's precision@K 0.83 against 0.67 from the pooler (benchmarks/audit.py).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from hftransfer.backbones.sentence_pooling import CONFIG_KEY
from hftransfer.data.labels import LABELS
from hftransfer.strategies.features import FeatureCacheUnavailable, frozen_features, longest_first


def audit_features(model, config, task, processor, data, model_config) -> dict[str, np.ndarray]:
    """``{split: features}`` (float32, one row per example in the split's order) for every split of ``data``."""
    splits = tuple(data.splits)
    if task.pixel_key is not None:
        found = frozen_features(model, config, task, processor, data, model_config, splits=splits)
        return {split: features.numpy() for split, (features, _) in found.items()}
    notes = list(data.notes)
    datasets = task.prepare_datasets(config, processor, data, model_config, augment=False)
    data.notes[:] = notes  # the audit reports its own findings; preparing says nothing new
    collator = task.build_collator(config, processor)
    args = config.training
    model.to(args.device).eval()
    return {
        split: mean_token_features(model, datasets[split], collator, args.per_device_eval_batch_size, args.device)
        for split in splits
    }


@torch.no_grad()
def mean_token_features(model, dataset, collator, batch_size: int, device) -> np.ndarray:
    """The mean of the backbone's last hidden states over each example's tokens (padding left out)."""
    order = longest_first(dataset)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=order.tolist(), collate_fn=collator)
    rows, found, done = None, [], 0
    for batch in loader:
        batch.pop(LABELS, None)
        inputs = {key: value.to(device) for key, value in batch.items()}
        hidden = encoder_states(model, inputs)
        if hidden.dim() != 3 or "attention_mask" not in inputs:
            raise FeatureCacheUnavailable(f"{type(model).__name__} gives no token states to average")
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        found.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float().cpu())
        done += len(hidden)
    rows = torch.cat(found)
    features = torch.empty_like(rows)
    features[order[:done]] = rows  # back to the split's order
    return features.numpy()


def encoder_states(model, inputs: dict):
    """The encoder's own last hidden states: a sentence encoder pooled by an appended averaging layer
    (backbones/sentence_pooling.py) is read below that layer, whose every token holds the normalised mean."""
    pooled = getattr(model.config, CONFIG_KEY, None)
    if isinstance(pooled, dict) and pooled.get("mode") == "mean":
        return model.base_model(**inputs, output_hidden_states=True).hidden_states[-2]
    return model.base_model(**inputs).last_hidden_state
