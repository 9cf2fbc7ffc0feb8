"""The strategy registry: one typed record per transfer strategy (``strategies/base.py``), registered here.

One vocabulary for every task and backbone (timm and transformers), built on the block layout the model
describes itself (``backbones/blocks.py``). Layer-wise learning rates (``layer_decay``, ``head_learning_rate``)
work with every strategy (``rates.py``). A new strategy is one ``register_strategy`` call with its record (or
an ``hftransfer.strategies`` entry point, ``hftransfer/registry.py``); its options dataclass brings its own
recipe keys and flags. The recipe, the model card and the tasks ask the record and never compare names.
"""

from __future__ import annotations

import dataclasses
import logging

from transformers import TrainingArguments

from hftransfer.config.options import DataArguments, ModelArguments, TransferArguments
from hftransfer.registry import Registry
from hftransfer.strategies import auto, freezing, gradual, lora, probe
from hftransfer.strategies.base import Strategy, StrategyError

logger = logging.getLogger("hftransfer")


CORE_OPTIONS = (ModelArguments, DataArguments, TransferArguments, TrainingArguments)


def check_options(strategy: Strategy, registered: list[Strategy]) -> None:
    """One flag, one meaning: a strategy's option may not be one that another options class already defines."""
    if strategy.options is None:
        return
    others = [*CORE_OPTIONS, *(s.options for s in registered if s.options not in (None, strategy.options))]
    taken = {f.name: owner.__name__ for owner in others for f in dataclasses.fields(owner)}
    clashes = sorted(set(strategy.option_names()) & set(taken))
    if clashes:
        raise ValueError(
            f"strategy {strategy.name!r}: option(s) {', '.join(clashes)} already defined by "
            f"{', '.join(sorted({taken[c] for c in clashes}))}; prefix them with the strategy's name"
        )


STRATEGIES: Registry[Strategy] = Registry("strategy", "hftransfer.strategies", StrategyError, check_options)

BUILT_IN = (
    Strategy(
        "auto",
        "linear_probe, lp_ft or full, chosen from the data's size, its examples per class and how well "
        "the frozen features separate the classes (and, with few per class, how fast the body fine-tunes)",
        select=freezing.everything,
        choose=auto.choose,
    ),
    Strategy("full", "every parameter trains", select=freezing.everything, freezes=False),
    # A probe is a convex problem on fixed features: a larger step and more (cheap, cached) epochs.
    Strategy(
        "linear_probe",
        "backbone frozen, only the head trains (on cached features when possible)",
        select=freezing.head_only,
        fit=probe.fit_linear_probe,
        frozen_backbone=True,
        training_suggestions={"learning_rate": 1e-3, "num_train_epochs": 10},
    ),
    Strategy(
        "partial",
        "the last unfreeze_blocks blocks and the head train",
        select=freezing.top_blocks_and_head,
        needs_blocks=True,
        options=freezing.PartialOptions,
        card_rows=lambda o: [("unfreeze blocks", o.unfreeze_blocks or "top half")],
    ),
    Strategy(
        "gradual",
        "head first, then blocks unfreeze from the top at unfreeze_milestones (epochs)",
        select=gradual.unfreeze_gradually,
        needs_blocks=True,
        options=gradual.GradualOptions,
        multi_process=False,
        multi_process_hint="it changes which parameters train during the run, which DistributedDataParallel "
        "cannot follow; with several processes use partial or lp_ft",
        streams=False,
        streams_hint="its milestones are epochs, and a stream has none",
        card_rows=lambda o: [("unfreeze milestones", o.unfreeze_milestones or "every epoch after the first")],
    ),
    # The fine-tuning phase keeps the task's learning rate and epochs. Kumar et al. lower the rate after the
    # probe, and on hymenoptera (where the probe alone is as good as it gets) 0.3x did no harm, but where lp_ft is
    # chosen, on data the frozen features do not separate, the backbone must move: test accuracy with the FT
    # phase at 0.3x / 1x the task's rate, benchmarks/defaults.py: TREC 0.884 / 0.918, GTSRB 0.702 / 0.805-0.812
    # (full fine-tuning: 0.798 and 0.797). Fewer epochs cost accuracy too (TREC, 3 → 2 epochs at 0.3x: 0.884 → 0.846;
    # at 1x, 0.920 → 0.900): the one epoch fewer it fine-tunes by default buys its wall time (engine/schedule.py).
    # When fine-tuning does not beat the probe on validation, the probed model is kept.
    Strategy(
        "lp_ft",
        "a linear probe, then full fine-tuning from the probed head (or a fresh one: fine_tune_from_probe)",
        select=freezing.probe_then_everything,
        fit=probe.fit_probe_then_fine_tune,
        streams=False,
        streams_hint="its probe phase is counted in epochs, and a stream has none",
        options=probe.ProbeOptions,
        schedule=probe.probe_phase_schedule,
        card_rows=probe.card_rows,
    ),
    # LoRA's adapters start at zero and take larger steps than full fine-tuning (the LoRA paper's GLUE runs: 4e-4
    # to 5e-4, ten times and more the full fine-tuning rates).
    Strategy(
        "lora",
        "low-rank adapters (peft) on the backbone, the head trained in full",
        select=freezing.head_only,
        adapt=lora.add_adapters,
        finish=lora.save_lora,
        training_suggestions={"learning_rate": 1e-3},
        options=lora.LoraOptions,
        card_rows=lora.card_rows,
    ),
)


def register_strategy(strategy: Strategy) -> Strategy:
    """Add ``strategy`` to the registry; returns it."""
    return STRATEGIES.register(strategy)


def get_strategy(name: str) -> Strategy:
    """The strategy registered as ``name``; an unknown name raises with the valid ones."""
    return STRATEGIES.get(name)


def list_strategies() -> list[Strategy]:
    """Every registered strategy (built-in ones first, then plug-ins), in registration order."""
    return STRATEGIES.records()


def option_classes() -> list[type]:
    """The options dataclass of each registered strategy that has one (their fields are recipe keys and flags)."""
    return list(dict.fromkeys(s.options for s in list_strategies() if s.options is not None))


def resolve_strategy(strategy: Strategy, config, task, model, processor, data, model_config) -> Strategy:
    """The strategy the run uses: ``strategy`` itself, or the one it chooses from the data (``auto``), recorded in
    the config (its saved file and the model card say what was chosen and why)."""
    if strategy.choose is None:
        return strategy
    decision = strategy.choose(config, task, model, processor, data, model_config)
    logger.info(decision.describe())
    config.choose("strategy", decision.chosen, f"strategy {strategy.name}", decision.reason, note=False)
    config.notes.append(decision.describe())
    return get_strategy(decision.chosen)


def options_of_other_strategies(strategy: Strategy, explicit: frozenset[str] | set[str]) -> list[str]:
    """Options the user set that only other strategies read (they have no effect under ``strategy``)."""
    foreign = {option for other in list_strategies() if other is not strategy for option in other.option_names()}
    return sorted((foreign - set(strategy.option_names())) & set(explicit))


for _strategy in BUILT_IN:
    register_strategy(_strategy)
