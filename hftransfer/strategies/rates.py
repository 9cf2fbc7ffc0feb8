"""Learning rates per depth, with every strategy: the optimizer's parameter groups.

``layer_decay`` scales block ``i`` of ``n`` by ``layer_decay ** (n - i)`` (the BEiT/ELECTRA rule timm's
``param_groups_layer_decay`` implements; the last block gets ``layer_decay``, the stem the smallest rate),
``head_learning_rate`` sets the head's own rate. Weight decay skips biases and norm weights (every parameter
with one dimension). Groups cover every parameter the run will train, also those ``gradual`` unfreezes later.
"""

from __future__ import annotations

from torch import nn

from hftransfer.backbones.blocks import BlockLayout
from hftransfer.strategies.base import StrategyPlan


def _module_depths(layout: BlockLayout) -> dict[str, int]:
    """Module path → depth index (0 = stem … len(blocks) = last block, len(blocks) + 1 = head)."""
    depths = {}
    for depth, names in enumerate(layout.depth_groups):
        for name in names:
            depths[name.rsplit(".", 1)[0]] = depth
    return depths


def _depth_of(name: str, depths: dict[str, int], default: int) -> int:
    # peft renames parameters: base_model.model.<path>.lora_A.default.weight, <head>.modules_to_save.default.*
    for prefix in ("base_model.model.",):
        name = name.removeprefix(prefix)
    name = name.replace(".modules_to_save.default", "").replace(".original_module", "")
    parts = name.split(".")[:-1]
    while parts:
        depth = depths.get(".".join(parts))
        if depth is not None:
            return depth
        parts.pop()
    return default


def parameter_groups(
    model: nn.Module, plan: StrategyPlan, transfer, learning_rate: float, weight_decay: float
) -> list[dict]:
    """Optimizer groups: one per (learning rate, weight decay), covering every parameter the run will train."""
    depths = _module_depths(plan.layout) if (plan.layout and transfer.layer_decay is not None) else None
    top = len(plan.layout.blocks) if plan.layout else 0
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not (param.requires_grad or name in plan.eventually_trainable):
            continue
        is_head = name in plan.head_names
        rate = learning_rate
        if is_head:
            rate = transfer.head_learning_rate or learning_rate
        elif depths is not None:
            rate = learning_rate * transfer.layer_decay ** (top + 1 - min(_depth_of(name, depths, top), top))
        decay = 0.0 if param.ndim <= 1 else weight_decay  # biases and norm weights: no decay
        groups.setdefault((rate, decay), []).append(param)
    return [{"params": params, "lr": rate, "weight_decay": decay} for (rate, decay), params in groups.items()]
