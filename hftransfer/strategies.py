"""Transfer strategies: which pretrained parameters train.

``full`` trains everything. ``linear_probe`` freezes the backbone and trains only the head. The backbone is
what transformers calls the base model (``model.base_model_prefix``); the head is everything outside it (the
classifier the task added for the user's labels) or, for timm backbones, timm's ``get_classifier()``, so no
per-architecture name lists are needed.
"""

from __future__ import annotations

from torch import nn

from hftransfer.config import STRATEGIES


def backbone_of(model: nn.Module) -> nn.Module:
    """The pretrained trunk of a transformers model (e.g. ``model.bert``)."""
    prefix = getattr(model, "base_model_prefix", "")
    backbone = getattr(model, prefix, None) if prefix else None
    if not isinstance(backbone, nn.Module):
        raise ValueError(f"cannot find the backbone of {type(model).__name__} (base_model_prefix={prefix!r})")
    return backbone


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of the task head: outside the base model, or timm's own classifier inside it."""
    backbone = backbone_of(model)
    if hasattr(backbone, "get_classifier"):  # timm (TimmWrapper*): the head lives inside the timm model
        return list(backbone.get_classifier().parameters())
    inside = {id(p) for p in backbone.parameters()}
    return [p for p in model.parameters() if id(p) not in inside]


def apply_strategy(model: nn.Module, strategy: str) -> None:
    """Set ``requires_grad`` according to ``strategy``."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; valid strategies: {', '.join(STRATEGIES)}")
    model.requires_grad_(True)
    if strategy == "linear_probe":
        backbone = backbone_of(model)
        head = head_parameters(model)
        model.requires_grad_(False)
        for parameter in head:
            parameter.requires_grad_(True)
        # Frozen means frozen: BatchNorm/dropout in the trunk must not change with model.train().
        backbone.train = _stay_in_eval(backbone)
        backbone.eval()


def _stay_in_eval(module: nn.Module):
    def train(mode: bool = True):
        return nn.Module.train(module, False)
    return train


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
