"""``gradual``: the head trains first; blocks unfreeze from the top at the ``unfreeze_milestones`` epochs
(ULMFiT / Lightning Flash's ``unfreeze_milestones``).

Unfreezing only flips ``requires_grad``: every parameter is in the optimizer from the start with its own
learning rate, so the schedule is never touched (Flash added unfrozen layers as new groups at a tenth of
the rate).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from torch import nn
from transformers import TrainerCallback

from hftransfer.backbones.blocks import BlockLayout
from hftransfer.config.limits import NON_NEGATIVE, check_fields
from hftransfer.strategies.base import Selection, StrategyError, require_layout, set_trainable, top_blocks

logger = logging.getLogger("hftransfer")


@dataclass
class GradualOptions:
    """The options of ``gradual``."""

    unfreeze_milestones: list[float] | None = field(
        default=None,
        metadata={
            "range": NON_NEGATIVE,
            "help": "gradual: epochs at which more blocks unfreeze, spread evenly so all train after the "
            "last one (default: every epoch after the first).",
        },
    )

    def __post_init__(self) -> None:
        check_fields(self)


def unfreeze_gradually(
    model: nn.Module, layout: BlockLayout | None, options: GradualOptions, num_train_epochs: float
) -> Selection:
    layout = require_layout(layout, "gradual")
    schedule = GradualUnfreezing(model, layout, resolve_milestones(options.unfreeze_milestones, num_train_epochs))
    note = f"more blocks unfreeze at epochs {', '.join(f'{m:g}' for m in schedule.milestones)}"
    return Selection(schedule.trainable_at(0.0), {n for n, _ in model.named_parameters()}, [schedule], note)


def resolve_milestones(milestones: list[float] | None, num_train_epochs: float) -> list[float]:
    """Epochs at which ``gradual`` unfreezes more blocks; by default one milestone per epoch after the first."""
    if milestones is None:
        milestones = [float(e) for e in range(1, max(2, math.ceil(num_train_epochs)))]
    milestones = sorted(float(m) for m in milestones)
    if not milestones or milestones[0] <= 0:
        raise StrategyError(f"unfreeze_milestones must be epochs > 0, got {milestones}")
    if milestones[-1] >= num_train_epochs:
        logger.warning(
            "unfreeze_milestones %s reach past num_train_epochs=%s: some blocks will never train",
            milestones,
            num_train_epochs,
        )
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
        set_trainable(self.model, self.trainable_at(epoch))
        if count:
            logger.info(
                "epoch %.2f: %d of %d blocks train (from %s)",
                epoch,
                count,
                len(self.layout.blocks),
                self.layout.block_names[-count],
            )

    def on_train_begin(self, args, state, control, **kwargs):
        self._update(state.epoch or 0.0)

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._update(state.epoch or 0.0)
