"""The block structure of a backbone, read from the model itself: stem, blocks (input to output), head.

Strategies that treat depth differently (``partial``, ``gradual``, layer-wise learning rates) need to know
which parameters form which block. No per-model name lists: timm models describe their own structure with
``group_matcher`` (the same grouping timm's layer-decay optimizer uses); transformers models keep their
layers in one ``nn.ModuleList`` (``encoder.layer`` of BERT or ViT, ``encoder.stages`` of ConvNeXt …), found
as the list holding most of the backbone's parameters. Parameters before the first block are the stem
(embeddings, patch or conv stem); final norms and poolers after the last block belong to the last block
(as timm's matchers place them).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from hftransfer.errors import HftransferError


class BlockStructureError(HftransferError):
    """A backbone whose blocks cannot be found (only strategies that need them fail)."""


@dataclass
class BlockLayout:
    """Parameter names of the full model (``model.named_parameters()``), grouped by depth."""

    stem: list[str]
    blocks: list[list[str]]  # input side first
    head: list[str]
    block_names: list[str]  # a readable module path per block, for the start-of-run summary

    @property
    def depth_groups(self) -> list[list[str]]:
        """stem, blocks …, head: the order in which layer-wise learning rates decay (head last)."""
        return [self.stem, *self.blocks, self.head]


def backbone_of(model: nn.Module) -> nn.Module:
    """The pretrained trunk of a transformers model (``model.bert``, ``model.vit``, ``model.timm_model`` …)."""
    prefix = getattr(model, "base_model_prefix", "")
    backbone = getattr(model, prefix, None) if prefix else None
    if not isinstance(backbone, nn.Module):
        raise BlockStructureError(f"cannot find the backbone of {type(model).__name__} (base_model_prefix={prefix!r})")
    return backbone


def head_module(model: nn.Module) -> nn.Module:
    """The module that turns features into class scores: timm's classifier, or the last ``Linear`` whose outputs
    are the labels (``classifier`` of BERT/ViT/ConvNeXt, ``classifier.out_proj`` of RoBERTa)."""
    backbone = backbone_of(model)
    if hasattr(backbone, "get_classifier"):  # timm (TimmWrapper*): the head lives inside the timm model
        return backbone.get_classifier()
    inside = {id(m) for m in backbone.modules()}
    num_labels = getattr(getattr(model, "config", None), "num_labels", None)
    candidates = [
        m
        for m in model.modules()
        if id(m) not in inside and isinstance(m, nn.Linear) and (num_labels is None or m.out_features == num_labels)
    ]
    if not candidates:
        outside = [m for name, m in model.named_children() if id(m) not in inside]
        if len(outside) == 1:
            return outside[0]
        raise BlockStructureError(f"cannot find the classification head of {type(model).__name__}")
    return candidates[-1]


def head_parameter_names(model: nn.Module) -> list[str]:
    """Everything outside the backbone (transformers heads, e.g. RoBERTa's dense + out_proj), or timm's classifier."""
    backbone = backbone_of(model)
    if hasattr(backbone, "get_classifier"):
        ids = {id(p) for p in backbone.get_classifier().parameters()}
        return [n for n, p in model.named_parameters() if id(p) in ids]
    inside = {id(p) for p in backbone.parameters()}
    return [n for n, p in model.named_parameters() if id(p) not in inside]


def layout_of(model: nn.Module) -> BlockLayout:
    """Group the model's parameters into stem, blocks and head (see the module docstring)."""
    backbone = backbone_of(model)
    head = head_parameter_names(model)
    head_set = set(head)
    prefix = _prefix_of(model, backbone)
    if hasattr(backbone, "group_matcher"):
        groups = _timm_groups(backbone, prefix, head_set)
    else:
        groups = _module_list_groups(backbone, prefix)
    if len(groups) < 2:
        raise BlockStructureError(
            f"cannot split {type(backbone).__name__} into blocks (found {len(groups)} group); strategies "
            "partial and gradual and layer_decay need a timm model or a transformers model with a layer list"
        )
    stem, blocks = groups[0], groups[1:]
    return BlockLayout(stem=stem, blocks=blocks, head=head, block_names=[_common_module(b) for b in blocks])


def _prefix_of(model: nn.Module, backbone: nn.Module) -> str:
    for name, module in model.named_modules():
        if module is backbone:
            return f"{name}." if name else ""
    raise BlockStructureError("backbone is not a submodule of the model")


def _timm_groups(backbone, prefix: str, head: set[str]) -> list[list[str]]:
    from timm.models import group_parameters

    grouped = group_parameters(backbone, backbone.group_matcher(coarse=False))
    groups = []
    for layer_id in sorted(grouped):
        names = [prefix + n for n in grouped[layer_id] if prefix + n not in head]
        if names:
            groups.append(names)
    return groups


def _module_list_groups(backbone: nn.Module, prefix: str) -> list[list[str]]:
    """stem + one group per entry of the ModuleList holding most parameters; later parameters join the last."""
    best, best_size = None, 0
    for name, module in backbone.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 1:
            size = sum(p.numel() for p in module.parameters())
            if size > best_size:
                best, best_size = name, size
    if best is None:
        return []
    layers = backbone.get_submodule(best)
    owner = {}
    for index, layer in enumerate(layers):
        for param in layer.parameters():
            owner[id(param)] = index
    stem, blocks = [], [[] for _ in layers]
    seen_block = False
    for name, param in backbone.named_parameters():
        index = owner.get(id(param))
        if index is not None:
            seen_block = True
            blocks[index].append(prefix + name)
        elif not seen_block:
            stem.append(prefix + name)
        else:  # final norm / pooler: trains with the last block
            blocks[-1].append(prefix + name)
    return [stem, *[b for b in blocks if b]]


def _common_module(names: list[str]) -> str:
    """A readable block name: its indexed module (``bert.encoder.layer.1``, ``blocks.6.0``), plus the modules
    that joined it (``+ pooler``, ``+ conv_head, bn2``)."""
    modules = list(dict.fromkeys(n.rsplit(".", 1)[0] for n in names))
    parts = modules[0].split(".")
    digits = [i for i, part in enumerate(parts) if part.isdigit()]
    if not digits:
        main = _common_path(modules) or modules[0]
    else:
        end = digits[0]
        while end + 1 < len(parts) and parts[end + 1].isdigit():
            end += 1
        main = ".".join(parts[: end + 1])
    extras = [m for m in modules if m != main and not m.startswith(main + ".")]
    if not extras:
        return main
    shared = _common_path([main, *extras])
    short = list(dict.fromkeys(m.removeprefix(shared).lstrip(".").split(".")[0] for m in extras))
    return f"{main} + {', '.join(short)}"


def _common_path(paths: list[str]) -> str:
    common = []
    for parts in zip(*(p.split(".") for p in paths)):
        if len(set(parts)) > 1:
            break
        common.append(parts[0])
    return ".".join(common)
