"""Typed run configuration: hftransfer's own options plus transformers' ``TrainingArguments``.

Precedence, lowest first: dataclass defaults < the task's preferred training defaults < recipe YAML <
command-line flags. YAML values become argparse defaults (the TRL way), so a flag always wins and every
option keeps one name everywhere: ``learning_rate`` in YAML is ``--learning_rate`` on the command line.

A recipe may be flat (``model: ...``, ``learning_rate: ...``) or grouped in sections (``model:``, ``data:``,
``transfer:``, ``training:``) for readability; sections are flattened before parsing.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import types
from typing import Any

from transformers import HfArgumentParser, TrainingArguments
from transformers.hf_argparser import string_to_bool

from hftransfer.config.device import machine_training_defaults, placement_defaults
from hftransfer.config.limits import TRAINING_RANGES, VALIDATOR_METADATA, check_fields, describe_limits
from hftransfer.config.options import ConfigError, DataArguments, ModelArguments, TransferArguments
from hftransfer.config.recipes import load_recipe
from hftransfer.config.values import check_option_names, check_option_values, field_annotations
from hftransfer.engine.progress import output_is_piped
from hftransfer.strategies import get_strategy, list_strategies, option_classes
from hftransfer.tasks import get_task
from hftransfer.training.run_config import RunConfig

# What hftransfer changes in transformers' TrainingArguments defaults, for every task: evaluate and save
# every epoch, keep the best checkpoint by macro-F1 (robust to class imbalance, equal to accuracy's
# ranking on balanced data), no external loggers, a short warmup. Tasks add their own (learning rate …);
# settings that depend on the machine (DataLoader workers) are chosen when a run is parsed.
BASE_TRAINING_DEFAULTS: dict[str, Any] = {
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "logging_strategy": "steps",
    "logging_steps": 50,
    "load_best_model_at_end": True,
    "metric_for_best_model": "f1_macro",
    "greater_is_better": True,
    "save_total_limit": 2,
    "report_to": "none",
    "warmup_steps": 0.06,
    "weight_decay": 0.01,
    "seed": 42,
}

DATACLASSES = (ModelArguments, DataArguments, TransferArguments, TrainingArguments)


class _RaisingErrors:
    """argparse's ``error`` raises ``ConfigError`` instead of exiting: a bad flag from the Python API must not end the
    interpreter, and on the command line it ends as every other user error does (one line, exit 2)."""

    def error(self, message: str):
        raise ConfigError(message)


class OptionParser(_RaisingErrors, HfArgumentParser):
    """``HfArgumentParser`` whose errors are ``ConfigError``; hftransfer's own field metadata (ranges, choices) is
    left to its validator (``config/limits.py``), which checks every source's values alike after parsing."""

    @staticmethod
    def _parse_dataclass_field(parser, field):
        own = {k: v for k, v in field.metadata.items() if k not in VALIDATOR_METADATA}
        if "help" in own and describe_limits(field.metadata):
            own["help"] = f"{own['help']} [{describe_limits(field.metadata)}]"
        if len(own) != len(field.metadata):
            field = copy.copy(field)
            field.metadata = types.MappingProxyType(own)
        HfArgumentParser._parse_dataclass_field(parser, field)


class _PeekParser(_RaisingErrors, argparse.ArgumentParser):
    """A parser of a few options read before the full parse, whose errors are ``ConfigError``."""


def option_dataclasses(task_options: type | None = None) -> list[type]:
    """Every options dataclass of a run, in parsing order: hftransfer's own, each registered strategy's, the task's,
    then transformers' ``TrainingArguments``."""
    return [*DATACLASSES[:3], *option_classes(), *([task_options] if task_options else []), DATACLASSES[3]]


def make_parser(task_options: type | None = None) -> HfArgumentParser:
    """The argument parser of ``hftransfer train`` and ``python -m hftransfer.train`` for one task."""
    classes = option_dataclasses(task_options)
    parser = OptionParser(classes, description="Fine-tune a pretrained backbone on labelled data.", epilog=LAUNCH_HELP)
    parser.add_argument("--config", default=None, help="Recipe YAML; its values become defaults, flags win.")
    for action in parser._actions:  # the strategy registry's own names and descriptions
        if action.dest == "strategy":
            action.help = "Transfer strategy: " + "; ".join(f"{s.name} ({s.description})" for s in list_strategies())
    return parser


LAUNCH_HELP = (
    "Resume: --resume continues from the newest complete checkpoint in output_dir, --resume PATH from that one. "
    "Launch through accelerate: hftransfer train ... --accelerate_config NAME|PATH (templates: single_gpu, "
    "multi_gpu, fsdp, deepspeed_zero2, cpu; see `hftransfer accelerate-configs`) with --num_processes N and, "
    "for several machines, --num_machines, --machine_rank, --main_process_ip, --main_process_port."
)


def _option_names(parser: argparse.ArgumentParser) -> set[str]:
    return {action.dest for action in parser._actions if action.dest != "help"}


def _flags_given(argv: list[str] | None, task_options: type | None) -> set[str]:
    """The options present on the command line (a parser whose defaults are all suppressed)."""
    parser = make_parser(task_options)
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    namespace, _ = parser.parse_known_args(argv)
    return set(vars(namespace)) - {"config"}


def expand_resume_flag(argv: list[str]) -> list[str]:
    """``--resume`` (the newest checkpoint) or ``--resume PATH`` → ``--resume_from_checkpoint latest|PATH``."""
    expanded, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--resume":
            has_path = i + 1 < len(argv) and not argv[i + 1].startswith("-")
            expanded += ["--resume_from_checkpoint", argv[i + 1] if has_path else "latest"]
            i += 2 if has_path else 1
            continue
        if arg.startswith("--resume="):
            arg = "--resume_from_checkpoint=" + arg.split("=", 1)[1]
        expanded.append(arg)
        i += 1
    return expanded


def _peek_options(argv: list[str], recipe: dict[str, Any], types: dict[str, Any]) -> argparse.Namespace:
    """The values of a few options as the recipe and the flags give them (flags win), before the full parse."""
    pre = _PeekParser(add_help=False)
    for name, kind in types.items():
        if kind is string_to_bool:
            pre.add_argument(f"--{name}", type=kind, nargs="?", const=True, default=recipe.get(name))
        else:
            pre.add_argument(f"--{name}", type=kind, default=recipe.get(name))
    known, _ = pre.parse_known_args(argv)
    return known


def _placement_defaults(argv: list[str], recipe: dict[str, Any]) -> dict[str, Any]:
    """use_cpu on machines without a GPU, after checking the requested precision can run here."""
    known = _peek_options(argv, recipe, {"fp16": string_to_bool, "bf16": string_to_bool, "use_cpu": string_to_bool})
    return placement_defaults(bool(known.fp16), bool(known.bf16), known.use_cpu)


def _checkpoint_defaults(argv: list[str], recipe: dict[str, Any], explicit: set[str]) -> dict[str, Any]:
    """Checkpointing every N steps evaluates there too: best-checkpoint selection needs a metric per checkpoint
    (and TrainingArguments refuses save and eval schedules that differ)."""
    if "save_strategy" not in explicit or "eval_strategy" in explicit:
        return {}
    known = _peek_options(argv, recipe, {"save_strategy": str, "save_steps": float})
    mirrored = {"eval_strategy": known.save_strategy}
    if known.save_steps is not None and "eval_steps" not in explicit:
        mirrored["eval_steps"] = known.save_steps
    return mirrored


def check_training_arguments(args: TrainingArguments) -> None:
    """Values transformers accepts but that would fail late (numpy's seed, the optimizer, the first batch) or silently
    save an untrained model; refused here, before anything is loaded or written (ranges: config/limits.py)."""
    check_fields(args, TRAINING_RANGES)
    if args.max_steps <= 0 and not args.num_train_epochs > 0:
        raise ConfigError(
            f"num_train_epochs must be > 0 (or set max_steps), got {args.num_train_epochs}: the run "
            "would save an untrained model"
        )


def check_streaming(strategy, transfer: TransferArguments, args: TrainingArguments) -> None:
    """A stream has no length: the run is counted in steps, and the strategy must not need epochs."""
    if args.max_steps <= 0 and not transfer.time_budget:
        raise ConfigError(
            "streaming: true needs max_steps (the number of optimiser steps: a stream's length is not "
            "known before its end) or time_budget (the steps that fit are measured)"
        )
    if not strategy.streams:
        streaming_ones = ", ".join(s.name for s in list_strategies() if s.streams)
        raise ConfigError(
            f"strategy {strategy.name} cannot train on a stream: {strategy.streams_hint}; with "
            f"streaming use one of {streaming_ones}"
        )


def parse_config(
    argv: list[str] | None = None,
    *,
    recipe: str | os.PathLike | None = None,
    options: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
    callbacks: list | None = None,
) -> RunConfig:
    """Parse ``argv`` (flags, optionally ``--config RECIPE``) into a :class:`RunConfig`.

    The Python API passes ``recipe`` (a path) and ``options`` (keyword values, ``None`` meaning unset) instead of
    flags: they take the recipe's place in the precedence, keywords over the recipe, and are checked like its
    values, so no value is ever read as a flag. ``inputs`` (splits held in memory, as ``datasets.Dataset``) and
    ``callbacks`` (``TrainerCallback`` objects) are the API's too, kept with the config and never saved.
    """
    argv = expand_resume_flag(list(sys.argv[1:] if argv is None else argv))
    options = keyword_options(options or {})
    known = _peek_options(argv, {}, {"config": str, "task": str})
    for name in ("config", "task"):  # read before the other values are checked: strings, or a path for config
        if name in options and not isinstance(options[name], (str, os.PathLike)):
            raise ConfigError(f"{name} takes a string, got {type(options[name]).__name__} {options[name]!r:.80}")
    recipe_path = options.pop("config", None) or recipe or known.config
    from_recipe = load_recipe(recipe_path) if recipe_path else {}
    if not isinstance(from_recipe.get("task", ""), str):
        raise ConfigError(f"task in {recipe_path} takes a string, got {from_recipe['task']!r:.80}")
    task = get_task(options.get("task") or known.task or from_recipe.get("task") or ModelArguments.task)
    parser = make_parser(task.options)
    recipe_values, keyword_values = _checked_values(parser, task, argv, from_recipe, str(recipe_path), options)
    layer = {**recipe_values, **keyword_values}
    flags = _flags_given(argv, task.options)
    explicit = frozenset(set(layer) | flags)
    sources = _set_defaults(
        parser,
        [
            ("hftransfer's default", BASE_TRAINING_DEFAULTS),
            ("this machine", machine_training_defaults(task.gpu_dataloader_workers)),
            ("output to a file or pipe", {"disable_tqdm": True} if output_is_piped() else {}),  # bars are fragments
            (f"task {task.name}", task.training_defaults),
            ("this machine", _placement_defaults(argv, layer)),
            ("follows save_strategy", _checkpoint_defaults(argv, layer, explicit)),
            ("recipe", recipe_values),
            ("keyword", keyword_values),
        ],
    )
    sources.update(dict.fromkeys(flags, "flag"))
    config = _run_config(parser, argv, task, explicit, sources)
    config.inputs, config.callbacks = dict(inputs or {}), list(callbacks or [])
    if config.inputs:
        shown = ", ".join(f"{split} {len(ds):,} rows" for split, ds in config.inputs.items())
        config.notes.append(
            f"data: given in memory to hftransfer.finetune ({shown}); this file alone cannot repeat the run"
        )
    return config


def _checked_values(
    parser: argparse.ArgumentParser,
    task,
    argv: list[str],
    from_recipe: dict[str, Any],
    recipe_name: str,
    options: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The recipe's and the keywords' values, each name known and each value converted by its option's type; the
    flags' names known too."""
    names = _option_names(parser) - {"config"}
    check_option_names(from_recipe, names, recipe_name)
    check_option_names(options, names, "the keyword options")
    annotations = field_annotations(*option_dataclasses(task.options))
    recipe_values = check_option_values(parser, from_recipe, recipe_name, annotations)
    keyword_values = check_option_values(parser, options, "the keyword options", annotations)
    if "hub_token" in {**recipe_values, **keyword_values} or any(
        a == "--hub_token" or a.startswith("--hub_token=") for a in argv or []
    ):
        raise ConfigError(
            "hub_token is not accepted (a token in a recipe or on the command line ends up in files, "
            "logs and shell history); set HF_TOKEN or run `hf auth login`"
        )
    _check_flag_names(parser, argv, names)
    return recipe_values, keyword_values


def _run_config(
    parser: HfArgumentParser, argv: list[str], task, explicit: frozenset[str], sources: dict[str, str]
) -> RunConfig:
    """The option dataclasses parsed (flags over the defaults set) and checked together."""
    try:
        parsed = dict(
            zip(
                option_dataclasses(task.options),
                parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False),
            )
        )
    except ValueError as err:  # raised by __post_init__ checks, ours and transformers'
        raise ConfigError(str(err)) from None
    model_args, data_args, transfer_args, training_args = (parsed[cls] for cls in DATACLASSES)
    strategy = get_strategy(transfer_args.strategy)  # an unknown name fails here, with the valid ones
    check_training_arguments(training_args)
    if data_args.streaming:
        check_streaming(strategy, transfer_args, training_args)
    return RunConfig(
        model_args,
        data_args,
        transfer_args,
        training_args,
        parsed[task.options] if task.options else None,
        explicit,
        strategy_options={s.name: parsed[s.options] for s in list_strategies() if s.options},
        sources=sources,
    )


def _set_defaults(parser: argparse.ArgumentParser, layers: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """Each layer's values become the parser's defaults, later layers over earlier ones; returns where each option's
    value came from."""
    sources: dict[str, str] = {}
    for source, values in layers:
        parser.set_defaults(**values)
        sources.update(dict.fromkeys(values, source))
    return sources


def keyword_options(options: dict[str, Any]) -> dict[str, Any]:
    """The Python API's keywords as options: ``None`` is unset, ``resume=True|PATH`` is ``--resume [PATH]``."""
    chosen = {key: value for key, value in options.items() if value is not None}
    resume = chosen.pop("resume", None)
    if resume is not None and resume is not False:
        chosen["resume_from_checkpoint"] = "latest" if resume is True else resume
    return chosen


def _check_flag_names(parser: argparse.ArgumentParser, argv: list[str], names: set[str]) -> None:
    """Flags that are no option, named with the closest option (argparse's own message lists them raw)."""
    _, rest = parser.parse_known_args(argv)
    unknown = [arg.split("=", 1)[0].lstrip("-") for arg in rest if arg.startswith("--")]
    if unknown:
        check_option_names(unknown, names, "the command line")
