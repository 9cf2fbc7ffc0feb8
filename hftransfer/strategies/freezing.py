"""What trains under ``full``, ``linear_probe``, ``partial`` and ``lp_ft``, and how frozen parts stay frozen.

- ``full``: everything trains.
- ``linear_probe``: the backbone is frozen, only the head trains (on cached features when possible).
- ``partial``: the last ``unfreeze_blocks`` blocks and the head train.
- ``lp_ft``: everything trains after a linear probe (the probe phase freezes the backbone itself, see probe.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from hftransfer.backbones.blocks import BlockLayout, head_parameter_names
from hftransfer.config.limits import AT_LEAST_ONE, check_fields, option
from hftransfer.strategies.base import Selection, require_layout, resolve_unfreeze_blocks, top_blocks


@dataclass
class PartialOptions:
    """The options of ``partial``."""

    unfreeze_blocks: int | None = field(
        default=None,
        metadata=option("partial: how many of the last blocks train (default: the top half).", range=AT_LEAST_ONE),
    )

    def __post_init__(self) -> None:
        check_fields(self)


def everything(model: nn.Module, layout: BlockLayout | None, options: None, num_train_epochs: float) -> Selection:
    names = {n for n, _ in model.named_parameters()}
    return Selection(names, names)


def probe_then_everything(model: nn.Module, layout: BlockLayout | None, options, num_train_epochs: float) -> Selection:
    """``options``: lp_ft's ``ProbeOptions`` (probe.py)."""
    selection = everything(model, layout, None, num_train_epochs)
    start = "the probed head" if options.fine_tune_from_probe else "a fresh head, the probe kept if it scores higher"
    selection.note = f"a linear probe, then full fine-tuning from {start}"
    return selection


def head_only(model: nn.Module, layout: BlockLayout | None, options: object, num_train_epochs: float) -> Selection:
    names = set(head_parameter_names(model))
    return Selection(names, names)


def top_blocks_and_head(
    model: nn.Module, layout: BlockLayout | None, options: PartialOptions, num_train_epochs: float
) -> Selection:
    layout = require_layout(layout, "partial")
    count = resolve_unfreeze_blocks(options.unfreeze_blocks, layout)
    names = top_blocks(layout, count) | set(layout.head)
    return Selection(names, names)


def keep_frozen_parts_in_eval(model: nn.Module, update_norm_stats: bool = False):
    """Run every fully frozen submodule in eval mode while training (Trainer calls ``model.train()`` each step).

    Frozen means frozen: BatchNorm in a frozen block keeps its running statistics (they are part of the
    pretrained weights) and dropout in it is off, so a probe sees the same features as a cached probe.
    ``update_norm_stats`` lets BatchNorm layers of frozen parts re-estimate their statistics on the new data
    (AdaBN-style) while their weights stay fixed. Checked at every forward, so gradual unfreezing is followed.
    """

    def hook(module, args):
        if module.training:
            _eval_frozen_children(module, update_norm_stats)

    return model.register_forward_pre_hook(hook)


def _eval_frozen_children(module: nn.Module, update_norm_stats: bool) -> None:
    for child in module.children():
        params = list(child.parameters())
        if not params:
            continue  # parameter-free modules (dropout, activations) follow their parent
        if not any(p.requires_grad for p in params):
            child.eval()
            if update_norm_stats:
                for sub in child.modules():
                    if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                        sub.train()
        else:
            _eval_frozen_children(child, update_norm_stats)
