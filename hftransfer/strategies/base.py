"""The strategy record and what every strategy shares: the plan it makes for a model, and how a run is fitted.

A strategy is a small typed record (like a task): what it trains (``select``), how it changes the model
(``adapt``, e.g. LoRA's adapters), how the run is fitted (``fit``: one Trainer run, or a probe first), what
it adds to the saved model (``finish``) and to the model card (``card_rows``). The recipe only calls these;
no code outside this package compares strategy names.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

from torch import nn
from transformers import PretrainedConfig, TrainerCallback

from hftransfer.backbones.blocks import BlockLayout, BlockStructureError, head_parameter_names, layout_of
from hftransfer.errors import HftransferError

if TYPE_CHECKING:  # for hints only: the run's objects come from the layers above
    from datasets import Dataset

    from hftransfer.data.labels import LabelledData
    from hftransfer.engine.trainer import TransferTrainer
    from hftransfer.tasks.base import Task
    from hftransfer.training.run_config import RunConfig

logger = logging.getLogger("hftransfer")


class StrategyError(HftransferError):
    """A strategy or strategy parameter that cannot apply to this model; names the valid choices."""


@dataclass
class Selection:
    """What a strategy trains: now (``trainable``), at some point of the run (``eventually``), and how it changes."""

    trainable: set[str]
    eventually: set[str]
    callbacks: list[TrainerCallback] = field(default_factory=list)
    note: str = ""


@dataclass
class StrategyPlan:
    """What a strategy decided for one model: shown at start, saved with the run, used by the optimizer."""

    strategy: str
    layout: BlockLayout | None
    trainable_blocks: list[str]  # readable names of the blocks that train at the start
    eventually_trainable: set[str]  # parameter names that train at some point of the run (optimizer groups)
    head_names: set[str]  # the head's parameters (their own learning rate)
    callbacks: list[TrainerCallback] = field(default_factory=list)
    note: str = ""  # e.g. the schedule of lp_ft or gradual
    summary: str | None = None  # what trains, when the block view does not say it (LoRA's adapters)
    head: str = ""  # the head's description (linear, MLP sizes, pooling), set when the head is built
    parameters: tuple[int, int] = (0, 0)  # (trainable, total) at the start of training

    def describe(self) -> str:
        return self._trainable() + (f" ({self.note})" if self.note else "") + (f"; {self.head}" if self.head else "")

    def _trainable(self) -> str:
        if self.summary:
            return f"{self.strategy}: {self.summary}"
        if self.layout is None:
            return self.strategy
        n = len(self.layout.blocks)
        if not self.trainable_blocks:
            return f"{self.strategy}: head only (of {n} blocks)"
        if len(self.trainable_blocks) == n:
            return f"{self.strategy}: all {n} blocks + head"
        names = self.trainable_blocks
        shown = ", ".join(names if len(names) <= 4 else [names[0], "…", names[-1]])
        return f"{self.strategy}: last {len(names)} of {n} blocks ({shown}) + head"


@dataclass
class FitContext:
    """Everything a strategy's ``fit`` may use: the configured Trainer and what it was built from."""

    config: RunConfig
    trainer: TransferTrainer
    model: nn.Module
    datasets: dict[str, Dataset]
    task: Task
    processor: Any  # the task's tokenizer or image processor
    data: LabelledData
    model_config: PretrainedConfig | None
    augmentation: str | None  # the training augmentation in force (None: examples as evaluation sees them)
    checkpoint: str | None  # the checkpoint being resumed
    options: Any = None  # the strategy's own options (an instance of its ``options`` class), if it has any


@dataclass
class FitResult:
    metrics: dict  # the Trainer's train metrics (runtime, samples/s, loss)
    best: str | None  # where the kept weights come from (a checkpoint, a probe step), for the summary


def fit_with_trainer(ctx: FitContext) -> FitResult:
    """One Trainer run (resumed from ``ctx.checkpoint`` when there is one)."""
    result = ctx.trainer.train(resume_from_checkpoint=ctx.checkpoint)
    return FitResult(result.metrics, ctx.trainer.state.best_model_checkpoint)


class Select(Protocol):
    def __call__(
        self, model: nn.Module, layout: BlockLayout | None, options: Any, num_train_epochs: float, /
    ) -> Selection: ...


class Adapt(Protocol):
    def __call__(self, model: nn.Module, options: Any, plan: StrategyPlan, /) -> nn.Module: ...


class Fit(Protocol):
    def __call__(self, ctx: FitContext, /) -> FitResult: ...


class Finish(Protocol):
    def __call__(self, trainer: TransferTrainer, staging_dir: Path, options: Any, /) -> None: ...


class Schedule(Protocol):
    def __call__(self, config: RunConfig, options: Any, data: LabelledData, /) -> dict[str, tuple[Any, str]]: ...


class Choose(Protocol):
    def __call__(
        self,
        config: RunConfig,
        task: Task,
        model: nn.Module,
        processor: Any,
        data: LabelledData,
        model_config: PretrainedConfig | None,
        /,
    ) -> Any: ...


@dataclass(frozen=True)
class Strategy:
    """A transfer strategy. ``options`` is the strategy's own dataclass (or None); an instance of it, parsed from
    the recipe, the flags or the API's keywords, is what its hooks receive as ``options``.

    Attributes:
        name, description: registry key and the line ``--help`` shows.
        select: the parameters that train (``Select``).
        needs_blocks: the backbone must split into blocks (``partial``, ``gradual``).
        options: a dataclass of the options only this strategy reads: its fields become recipe keys, ``--flags``
            and ``--help`` lines (set with another strategy, they are ignored: the run warns).
        training_suggestions: TrainingArguments values it prefers where the user set none.
        learning_rate_scale: times the task's default learning rate, where the user set none.
        frozen_backbone: the backbone never trains, so by default training examples are not augmented (then
            frozen features can be computed once and cached).
        freezes: some parameters are frozen at some point of the run (frozen parts then run in eval mode).
        multi_process: False when it cannot run under DistributedDataParallel; ``multi_process_hint`` says why.
        streams: False when it cannot train on a stream (``streaming: true``); ``streams_hint`` says why.
        adapt: wraps the model after ``select`` (LoRA), updating the plan (``Adapt``).
        fit: how the run is fitted (``Fit``; default one Trainer run).
        finish: last changes to the saved model (``Finish``: LoRA's merge).
        card_rows: ``options -> [(setting, value)]`` for the model card.
        schedule: values this strategy chooses for the data where the user set none (``Schedule``: lp_ft's epochs).
        choose: for a strategy that picks another one from the data (``auto``; ``Choose``, returning a
            ``Decision``); the run then goes on with the chosen strategy.
    """

    name: str
    description: str
    select: Select
    needs_blocks: bool = False
    options: type | None = None
    training_suggestions: dict[str, Any] = field(default_factory=dict)
    learning_rate_scale: float = 1.0
    frozen_backbone: bool = False
    freezes: bool = True
    multi_process: bool = True
    multi_process_hint: str = ""
    streams: bool = True
    streams_hint: str = ""
    adapt: Adapt | None = None
    fit: Fit = fit_with_trainer
    finish: Finish | None = None
    card_rows: Callable[[Any], list[tuple[str, Any]]] | None = None
    schedule: Schedule | None = None
    choose: Choose | None = None

    def option_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.options)) if self.options else ()


def set_trainable(model: nn.Module, names: set[str]) -> None:
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)


@contextmanager
def training_phase(model: nn.Module, trainable: set[str], args, name: str) -> Iterator[Path]:
    """A phase of a fit that trains only ``trainable`` (lp_ft's probe, its contrastive phase) in its own working
    folder of output_dir, recorded as the run's; yields the folder. Afterwards the parameters that trained before
    train again and the folder is removed."""
    from hftransfer.files.written import record_entries, working_dir

    before = {n for n, p in model.named_parameters() if p.requires_grad}
    set_trainable(model, trainable)
    folder = working_dir(args.output_dir, name)
    if args.process_index == 0:
        record_entries(args.output_dir, folder.name)
    try:
        yield folder
    finally:
        set_trainable(model, before)
        if args.process_index == 0:
            shutil.rmtree(folder, ignore_errors=True)


def top_blocks(layout: BlockLayout, count: int) -> set[str]:
    """Parameter names of the last ``count`` blocks (all blocks and the stem when count covers everything)."""
    names = {n for block in layout.blocks[len(layout.blocks) - count :] for n in block} if count else set()
    if count >= len(layout.blocks):
        names |= set(layout.stem)
    return names


def _layout(model: nn.Module, strategy: Strategy, transfer) -> BlockLayout | None:
    """The block layout: required by some strategies and by layer_decay, else only used to say what trains."""
    try:
        return layout_of(model)
    except BlockStructureError as err:
        if strategy.needs_blocks or transfer.layer_decay is not None:
            raise StrategyError(
                f"strategy {strategy.name!r}"
                + (" with layer_decay" if transfer.layer_decay else "")
                + f" cannot be used with this model: {err}"
            ) from None
        return None


def apply_strategy(
    strategy: Strategy, model: nn.Module, transfer, options: Any = None, num_train_epochs: float = 1.0
) -> tuple[nn.Module, StrategyPlan]:
    """Set ``requires_grad`` as the strategy says and adapt the model; returns (model, plan). ``options``: the
    strategy's own (an instance of ``strategy.options``)."""
    layout = _layout(model, strategy, transfer)
    selection = strategy.select(model, layout, options, num_train_epochs)
    set_trainable(model, selection.trainable)
    block_names = []
    if layout is not None:
        block_names = [
            b for b, params in zip(layout.block_names, layout.blocks) if selection.trainable.issuperset(params)
        ]
    note = selection.note
    if transfer.layer_decay is not None:
        note = ", ".join(filter(None, [note, f"layer_decay {transfer.layer_decay:g}"]))
    plan = StrategyPlan(
        strategy.name,
        layout,
        block_names,
        selection.eventually,
        set(head_parameter_names(model)),
        selection.callbacks,
        note,
    )
    if strategy.adapt is not None:
        model = strategy.adapt(model, options, plan)
    return model, plan


def require_layout(layout: BlockLayout | None, strategy: str) -> BlockLayout:
    """The layout a block-wise strategy needs (``needs_blocks``: ``apply_strategy`` refuses a model without one)."""
    if layout is None:
        raise StrategyError(f"strategy {strategy!r} needs a backbone that splits into blocks")
    return layout


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def resolve_unfreeze_blocks(wanted: int | None, layout: BlockLayout) -> int:
    """K for ``partial``: as given (1..number of blocks), or by default the top half of the blocks."""
    n = len(layout.blocks)
    if wanted is None:
        return math.ceil(n / 2)
    if not 1 <= wanted <= n:
        raise StrategyError(
            f"unfreeze_blocks={wanted} but the backbone has {n} blocks; choose 1 to {n} "
            f"(blocks: {', '.join(layout.block_names)})"
        )
    return wanted
