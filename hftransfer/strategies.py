"""Transfer strategies: which pretrained parameters train, when, and at which learning rate.

One vocabulary for every task and backbone (timm and transformers), built on the block layout the model
describes itself (``blocks.py``):

- ``full``: everything trains.
- ``linear_probe``: the backbone is frozen, only the head trains (on cached features when possible).
- ``partial``: the last ``unfreeze_blocks`` blocks and the head train.
- ``gradual``: the head trains first; blocks unfreeze from the top at the ``unfreeze_milestones`` epochs
  (ULMFiT / Lightning Flash's ``unfreeze_milestones``). Unfreezing only flips ``requires_grad``: every
  parameter is in the optimizer from the start with its own learning rate, so the schedule is never touched
  (Flash added unfrozen layers as new groups at a tenth of the rate).
- ``lp_ft``: a linear probe first, then full fine-tuning from the probed head (Kumar et al., ICLR 2022).
- ``lora``: low-rank adapters on the backbone (``peft``), the head trained in full (see ``lora.py``).

Learning rates per depth work with every strategy: ``layer_decay`` scales block ``i`` of ``n`` by
``layer_decay ** (n - i)`` (the BEiT/ELECTRA rule timm's ``param_groups_layer_decay`` implements; the last
block gets ``layer_decay``, the stem the smallest rate), ``head_learning_rate`` sets the head's own rate.
Weight decay skips biases and norm weights (every parameter with one dimension).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from torch import nn
from transformers import TrainerCallback

from hftransfer.blocks import BlockLayout, BlockStructureError, head_parameter_names, layout_of

logger = logging.getLogger("hftransfer")


@dataclass(frozen=True)
class Strategy:
    """A transfer strategy: what it does and the training values it prefers where the user set none."""

    name: str
    description: str
    needs_blocks: bool = False
    training_suggestions: dict[str, Any] = field(default_factory=dict)
    learning_rate_scale: float = 1.0  # times the task's default learning rate, where the user set none


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("full", "every parameter trains"),
    # A probe is a convex problem on fixed features: a larger step and more (cheap, cached) epochs.
    Strategy("linear_probe", "backbone frozen, only the head trains (on cached features when possible)",
             training_suggestions={"learning_rate": 1e-3, "num_train_epochs": 10}),
    Strategy("partial", "the last unfreeze_blocks blocks and the head train", needs_blocks=True),
    Strategy("gradual", "head first, then blocks unfreeze from the top at unfreeze_milestones (epochs)",
             needs_blocks=True),
    # Fine-tuning from a trained head needs smaller steps than from a random one (Kumar et al. use a lower rate
    # for the FT phase). Hymenoptera, EfficientNet-Lite0, accuracy per FT epoch after a 0.954 probe: at the
    # full fine-tuning default 1e-3 0.935 0.935 0.908 …; at 3e-4 0.954 0.941 0.948 0.935; at 1e-4 0.948 0.941
    # 0.935 0.928. (On so small a set FT does not beat the probe: the probed model is then kept.)
    Strategy("lp_ft", "linear probe for probe_epochs, then full fine-tuning from the probed head",
             learning_rate_scale=0.3),
    # LoRA's adapters start at zero and take larger steps than full fine-tuning (the LoRA paper's GLUE runs: 4e-4
    # to 5e-4, ten times and more the full fine-tuning rates).
    Strategy("lora", "low-rank adapters (peft) on the backbone, the head trained in full",
             training_suggestions={"learning_rate": 1e-3}),
)}


class StrategyError(ValueError):
    """A strategy or strategy parameter that cannot apply to this model; names the valid choices."""


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise StrategyError(f"unknown strategy {name!r}; valid strategies: {', '.join(STRATEGIES)}") from None


@dataclass
class StrategyPlan:
    """What a strategy decided for one model: shown at start, saved with the run, used by the optimizer."""

    strategy: str
    layout: BlockLayout | None
    trainable_blocks: list[str]  # readable names of the blocks that train at the start
    eventually_trainable: set[str]  # parameter names that train at some point of the run (optimizer groups)
    callbacks: list[TrainerCallback] = field(default_factory=list)
    note: str = ""  # e.g. the schedule of lp_ft or gradual

    def describe(self) -> str:
        return self._trainable() + (f" ({self.note})" if self.note else "")

    def _trainable(self) -> str:
        if self.layout is None or self.strategy == "lora":
            return f"{self.strategy}: {', '.join(self.trainable_blocks)}" if self.trainable_blocks else self.strategy
        n = len(self.layout.blocks)
        if not self.trainable_blocks:
            return f"{self.strategy}: head only (of {n} blocks)"
        if len(self.trainable_blocks) == n:
            return f"{self.strategy}: all {n} blocks + head"
        names = self.trainable_blocks
        shown = ", ".join(names if len(names) <= 4 else [names[0], "…", names[-1]])
        return f"{self.strategy}: last {len(names)} of {n} blocks ({shown}) + head"


def _set_trainable(model: nn.Module, names: set[str]) -> None:
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)


def _layout_or_error(model: nn.Module, strategy: str) -> BlockLayout:
    try:
        return layout_of(model)
    except BlockStructureError as err:
        raise StrategyError(f"strategy {strategy!r} cannot be used with this model: {err}") from None


def top_blocks(layout: BlockLayout, count: int) -> set[str]:
    """Parameter names of the last ``count`` blocks (all blocks and the stem when count covers everything)."""
    names = {n for block in layout.blocks[len(layout.blocks) - count:] for n in block} if count else set()
    if count >= len(layout.blocks):
        names |= set(layout.stem)
    return names


def apply_strategy(model: nn.Module, transfer, num_train_epochs: float = 1.0) -> StrategyPlan:
    """Set ``requires_grad`` for ``transfer.strategy`` and return the plan (``lora`` is applied in lora.py,
    after this; ``lp_ft`` starts as a linear probe, see ``train.py``)."""
    name = transfer.strategy
    get_strategy(name)
    all_names = {n for n, _ in model.named_parameters()}
    needs_layout = get_strategy(name).needs_blocks or transfer.layer_decay is not None
    if needs_layout:
        layout = _layout_or_error(model, name)
    else:  # only to say which blocks train
        try:
            layout = layout_of(model)
        except BlockStructureError:
            layout = None
    callbacks: list[TrainerCallback] = []

    if name in {"full", "lp_ft"}:
        trainable, eventually = all_names, all_names
    elif name in {"linear_probe", "lora"}:
        trainable = set(head_parameter_names(model))
        eventually = trainable
    elif name == "partial":
        count = resolve_unfreeze_blocks(transfer.unfreeze_blocks, layout)
        trainable = top_blocks(layout, count) | set(layout.head)
        eventually = trainable
    elif name == "gradual":
        schedule = GradualUnfreezing(model, layout, resolve_milestones(transfer.unfreeze_milestones, num_train_epochs))
        trainable = schedule.trainable_at(0.0)
        eventually = all_names
        callbacks.append(schedule)
    else:  # pragma: no cover - every registered strategy is handled above
        raise StrategyError(f"strategy {name!r} has no implementation")
    _set_trainable(model, trainable)
    block_names = []
    if layout is not None:
        block_names = [b for b, params in zip(layout.block_names, layout.blocks) if trainable.issuperset(params)]
    note = ""
    if name == "lp_ft":
        note = f"linear probe for {transfer.probe_epochs:g} epochs, then full fine-tuning"
    elif name == "gradual":
        note = f"more blocks unfreeze at epochs {', '.join(f'{m:g}' for m in callbacks[0].milestones)}"
    if transfer.layer_decay is not None:
        note = ", ".join(filter(None, [note, f"layer_decay {transfer.layer_decay:g}"]))
    return StrategyPlan(name, layout, block_names, eventually, callbacks, note)


def resolve_unfreeze_blocks(wanted: int | None, layout: BlockLayout) -> int:
    """K for ``partial``: as given (1..number of blocks), or by default the top half of the blocks."""
    n = len(layout.blocks)
    if wanted is None:
        return math.ceil(n / 2)
    if not 1 <= wanted <= n:
        raise StrategyError(f"unfreeze_blocks={wanted} but the backbone has {n} blocks; choose 1 to {n} "
                            f"(blocks: {', '.join(layout.block_names)})")
    return wanted


def resolve_milestones(milestones: list[float] | None, num_train_epochs: float) -> list[float]:
    """Epochs at which ``gradual`` unfreezes more blocks; by default one milestone per epoch after the first."""
    if milestones is None:
        milestones = [float(e) for e in range(1, max(2, math.ceil(num_train_epochs)))]
    milestones = sorted(float(m) for m in milestones)
    if not milestones or milestones[0] <= 0:
        raise StrategyError(f"unfreeze_milestones must be epochs > 0, got {milestones}")
    if milestones[-1] >= num_train_epochs:
        logger.warning("unfreeze_milestones %s reach past num_train_epochs=%s: some blocks will never train",
                       milestones, num_train_epochs)
    return milestones


class GradualUnfreezing(TrainerCallback):
    """Unfreeze blocks from the top at each milestone epoch, spreading them evenly over the milestones: after
    milestone ``i`` of ``m``, the top ``ceil(i * n / m)`` of ``n`` blocks train (the stem with the last)."""

    def __init__(self, model: nn.Module, layout: BlockLayout, milestones: list[float]):
        self.model, self.layout, self.milestones = model, layout, milestones
        self._current = -1

    def blocks_at(self, epoch: float) -> int:
        passed = sum(epoch + 1e-6 >= m for m in self.milestones)
        return math.ceil(passed * len(self.layout.blocks) / len(self.milestones))

    def trainable_at(self, epoch: float) -> set[str]:
        return top_blocks(self.layout, self.blocks_at(epoch)) | set(self.layout.head)

    def _update(self, epoch: float) -> None:
        count = self.blocks_at(epoch)
        if count == self._current:
            return
        self._current = count
        _set_trainable(self.model, self.trainable_at(epoch))
        if count:
            logger.info("epoch %.2f: %d of %d blocks train (from %s)", epoch, count, len(self.layout.blocks),
                        self.layout.block_names[-count])

    def on_train_begin(self, args, state, control, **kwargs):
        self._update(state.epoch or 0.0)

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._update(state.epoch or 0.0)


# --- optimizer parameter groups ------------------------------------------------------------------------------

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


def parameter_groups(model: nn.Module, plan: StrategyPlan, transfer, learning_rate: float,
                     weight_decay: float, head_names: set[str]) -> list[dict]:
    """Optimizer groups: one per (learning rate, weight decay), covering every parameter the run will train."""
    depths = _module_depths(plan.layout) if (plan.layout and transfer.layer_decay is not None) else None
    top = len(plan.layout.blocks) if plan.layout else 0
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not (param.requires_grad or name in plan.eventually_trainable):
            continue
        is_head = name in head_names
        rate = learning_rate
        if is_head:
            rate = transfer.head_learning_rate or learning_rate
        elif depths is not None:
            rate = learning_rate * transfer.layer_decay ** (top + 1 - min(_depth_of(name, depths, top), top))
        decay = 0.0 if param.ndim <= 1 else weight_decay  # biases and norm weights: no decay
        groups.setdefault((rate, decay), []).append(param)
    return [{"params": params, "lr": rate, "weight_decay": decay} for (rate, decay), params in groups.items()]


# --- frozen parts stay frozen -----------------------------------------------------------------------------------

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


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
