"""Typed run configuration: hftransfer's own options plus transformers' ``TrainingArguments``.

Precedence, lowest first: dataclass defaults < the task's preferred training defaults < recipe YAML <
command-line flags. YAML values become argparse defaults (the TRL way), so a flag always wins and every
option keeps one name everywhere: ``learning_rate`` in YAML is ``--learning_rate`` on the command line.

A recipe may be flat (``model: ...``, ``learning_rate: ...``) or grouped in sections (``model:``, ``data:``,
``transfer:``, ``training:``) for readability; sections are flattened before parsing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import HfArgumentParser, TrainingArguments
from transformers.hf_argparser import string_to_bool

from hftransfer.heads import HEAD_ACTIVATIONS, HEADS
from hftransfer.precision import PrecisionError, placement_defaults
from hftransfer.registry import get_task
from hftransfer.strategies import STRATEGIES

SECTIONS = ("model", "data", "transfer", "training")


class ConfigError(ValueError):
    """A recipe or flag that cannot be used; the message names the value and the valid choices."""


@dataclass
class ModelArguments:
    """Which task and which pretrained checkpoint to start from."""

    task: str = field(
        default="text-classification",
        metadata={"help": "Registered task to run (see `hftransfer tasks`)."},
    )
    model: str | None = field(
        default=None,
        metadata={"help": "Pretrained backbone: a Hub id (e.g. bert-base-uncased, timm/resnet50.a1_in1k) or a "
                          "local folder written by save_pretrained."},
    )
    timm_arch: str | None = field(
        default=None,
        metadata={"help": "A timm architecture name (e.g. resnet50, tf_efficientnet_lite0) instead of `model`; "
                          "pretrained weights come from `weights` or, online, from timm."},
    )
    weights: str | None = field(
        default=None, metadata={"help": "Local weights file (.pth/.safetensors state dict) for timm_arch."}
    )
    weights_key_map: str | None = field(
        default=None,
        metadata={"help": "YAML/JSON list of [regex, replacement] pairs renaming the keys of `weights` "
                          "(checkpoints saved under another naming)."},
    )
    candidates: list[str] | None = field(
        default=None,
        metadata={"help": "Backbones `hftransfer rank` compares with `model`: Hub ids or folders (in a recipe also "
                          "mappings such as {timm_arch: ..., weights: ..., weights_key_map: ...})."},
    )
    revision: str = field(default="main", metadata={"help": "Hub revision (branch, tag or commit) of the model."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow model code from the Hub repo to run (only for repos you trust)."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where Hub downloads are cached."})


@dataclass
class DataArguments:
    """Where the labelled data comes from and which columns hold what."""

    dataset: str | None = field(
        default=None, metadata={"help": "Hub dataset id (e.g. stanfordnlp/sst2); alternative to local files."}
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    train_split: str = field(default="train", metadata={"help": "Split of the Hub dataset used for training."})
    validation_split: str | None = field(
        default=None,
        metadata={"help": "Hub split used for validation; when unset, 'validation' is used if the dataset has it."},
    )
    test_split: str | None = field(default=None, metadata={"help": "Hub split evaluated once after training."})
    train_file: str | None = field(
        default=None, metadata={"help": "Local training file: .csv, .tsv, .json, .jsonl or .parquet."}
    )
    validation_file: str | None = field(default=None, metadata={"help": "Local validation file (same formats)."})
    test_file: str | None = field(default=None, metadata={"help": "Local test file, evaluated after training."})
    data_dir: str | None = field(
        default=None,
        metadata={"help": "A folder of labelled examples, for tasks that read folders (images: root/<class>/*, "
                          "optionally under train/ val/ test/)."},
    )
    label_column: str = field(default="label", metadata={"help": "Column with the labels (strings or integers)."})
    class_names: list[str] | None = field(
        default=None,
        metadata={"help": "Names for integer labels 0..N-1 (e.g. negative positive), used in the saved config."},
    )
    validation_fraction: float = field(
        default=0.1,
        metadata={"help": "Fraction of train carved out (stratified, seeded) when no validation split is given."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only this many training examples (seeded random subset)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Use only this many validation/test examples (seeded random subset)."}
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for preprocessing with datasets.map."}
    )


@dataclass
class TransferArguments:
    """How the pretrained weights are adapted (strategy, learning rates per depth, head) and how the run is kept."""

    strategy: str = field(
        default="full",
        metadata={"help": "Transfer strategy: " + "; ".join(f"{s.name} ({s.description})" for s in STRATEGIES.values())},
    )
    unfreeze_blocks: int | None = field(
        default=None, metadata={"help": "partial: how many of the last blocks train (default: the top half)."}
    )
    unfreeze_milestones: list[float] | None = field(
        default=None,
        metadata={"help": "gradual: epochs at which more blocks unfreeze, spread evenly so all train after the "
                          "last one (default: every epoch after the first)."},
    )
    probe_epochs: float = field(
        default=10, metadata={"help": "lp_ft: epochs of the linear probe before full fine-tuning."}
    )
    probe_learning_rate: float = field(
        default=1e-3, metadata={"help": "lp_ft: learning rate of the linear probe phase."}
    )
    layer_decay: float | None = field(
        default=None,
        metadata={"help": "Layer-wise learning-rate decay: block i of n trains at learning_rate * layer_decay^(n+1-i) "
                          "(e.g. 0.75; BEiT/ELECTRA style). Works with every strategy."},
    )
    head_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the head (default: learning_rate)."}
    )
    frozen_norm_stats: str = field(
        default="keep",
        metadata={"help": "BatchNorm in frozen parts: keep (running statistics stay the pretrained ones) or update "
                          "(re-estimated on your data while the weights stay frozen)."},
    )
    head: str = field(default="linear", metadata={"help": "Classification head: linear or mlp."})
    head_hidden_sizes: list[int] | None = field(
        default=None, metadata={"help": "mlp head: hidden layer sizes, e.g. 1024 512 (default: 512)."}
    )
    head_activation: str = field(default="gelu", metadata={"help": "mlp head activation: gelu, relu, silu or tanh."})
    head_dropout: float = field(default=0.0, metadata={"help": "mlp head: dropout before each layer of the head."})
    pooling: str | None = field(
        default=None,
        metadata={"help": "Feature pooling of timm backbones (avg, max, avgmax, catavgmax, token, …); default: the "
                          "backbone's own."},
    )
    lora_r: int = field(default=8, metadata={"help": "lora: rank of the adapters."})
    lora_alpha: float = field(default=16, metadata={"help": "lora: scaling numerator (adapter output * alpha / r)."})
    lora_dropout: float = field(default=0.1, metadata={"help": "lora: dropout on the adapters' input."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "lora: module names (or name suffixes) that get adapters; default: chosen for the "
                          "architecture (attention query/value of transformers, all linear/1x1-conv layers else)."},
    )
    lora_save: str = field(
        default="merged",
        metadata={"help": "lora: save the model with adapters merged (loads with plain pipeline) or the adapter alone."},
    )
    cache_features: bool = field(
        default=True,
        metadata={"help": "When the backbone is frozen and no augmentation is active, compute its features once "
                          "(cached on disk) and train the head on them."},
    )
    feature_cache_dir: str | None = field(
        default=None, metadata={"help": "Where cached features live (default: $HF_HOME/hftransfer/features)."}
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={"help": "Stop after this many evaluations without improvement of metric_for_best_model."},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into a non-empty output_dir (its files may be replaced)."}
    )
    channels_last: bool = field(
        default=False,
        metadata={"help": "Vision: train and evaluate with channels_last memory format (faster convolutions on "
                          "GPUs with tensor cores, above all in bf16/fp16)."},
    )

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {self.strategy!r}; valid strategies: {', '.join(STRATEGIES)}")
        choices = {"frozen_norm_stats": ("keep", "update"), "head": HEADS, "head_activation": HEAD_ACTIVATIONS,
                   "lora_save": ("merged", "adapter")}
        for option, valid in choices.items():
            if getattr(self, option) not in valid:
                raise ConfigError(f"unknown {option} {getattr(self, option)!r}; valid: {', '.join(valid)}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ConfigError(f"early_stopping_patience must be >= 1, got {self.early_stopping_patience}")
        if self.unfreeze_blocks is not None and self.unfreeze_blocks < 1:
            raise ConfigError(f"unfreeze_blocks must be >= 1, got {self.unfreeze_blocks}")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise ConfigError(f"layer_decay must be in (0, 1], got {self.layer_decay}")
        if not 0 <= self.head_dropout < 1:
            raise ConfigError(f"head_dropout must be in [0, 1), got {self.head_dropout}")
        if self.head_hidden_sizes is not None and self.head != "mlp":
            raise ConfigError("head_hidden_sizes is for head: mlp")
        if self.lora_r < 1:
            raise ConfigError(f"lora_r must be >= 1, got {self.lora_r}")
        if self.probe_epochs <= 0:
            raise ConfigError(f"probe_epochs must be > 0, got {self.probe_epochs}")


# What hftransfer changes in transformers' TrainingArguments defaults, for every task: evaluate and save
# every epoch, keep the best checkpoint by macro-F1 (robust to class imbalance, equal to accuracy's
# ranking on balanced data), no external loggers, a short warmup. Tasks add their own (learning rate …).
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
    # On a GPU, collating in worker processes keeps the accelerator fed; on a CPU the workers would only
    # take cores from the forward and backward passes.
    "dataloader_num_workers": min(4, (os.cpu_count() or 1) // 2) if torch.cuda.is_available() else 0,
    "dataloader_persistent_workers": torch.cuda.is_available(),
}

# Never written to the resolved config: secrets, and values that only make sense for one process or one
# invocation (repeating a run from its saved config starts it afresh, it does not resume it).
_UNSAVED_FIELDS = {"hub_token", "local_rank", "resume_from_checkpoint"}
# Chosen for the machine the run happens on; saved only when the user chose them, so the saved config of a
# CPU run still uses the GPU on a machine that has one.
_MACHINE_FIELDS = {"use_cpu": False}


@dataclass
class RunConfig:
    """The parsed configuration of one run."""

    model: ModelArguments
    data: DataArguments
    transfer: TransferArguments
    training: TrainingArguments
    task: Any = None  # the task's own options (an instance of its Task.options dataclass), if it has any
    explicit: frozenset[str] = frozenset()  # options the recipe or the command line set (not defaults)

    def apply_suggestions(self, suggestions: dict[str, Any]) -> dict[str, Any]:
        """Set the task's checkpoint-dependent training values the user did not choose; returns those set."""
        applied = {k: v for k, v in suggestions.items() if k not in self.explicit}
        for key, value in applied.items():
            setattr(self.training, key, value)
        return applied

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """A YAML-ready view, grouped in the same sections a recipe may use; no secrets."""
        training = {
            k: v for k, v in self.training.to_dict().items() if k not in _UNSAVED_FIELDS and not k.startswith("_")
        }
        training.update({k: v for k, v in _MACHINE_FIELDS.items() if k not in self.explicit and k in training})
        task_options = dataclasses.asdict(self.task) if self.task is not None else {}
        return {
            "model": dataclasses.asdict(self.model),
            "data": {**dataclasses.asdict(self.data), **task_options},
            "transfer": dataclasses.asdict(self.transfer),
            "training": training,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the fully resolved config so ``hftransfer train PATH`` repeats the run exactly."""
        header = "# Resolved hftransfer config. Repeat this run with:  hftransfer train <this file>\n"
        Path(path).write_text(header + yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")


DATACLASSES = (ModelArguments, DataArguments, TransferArguments, TrainingArguments)


def make_parser(task_options: type | None = None) -> HfArgumentParser:
    """The argument parser of ``hftransfer train`` and ``python -m hftransfer.train`` for one task."""
    classes = [*DATACLASSES[:3], *([task_options] if task_options else []), DATACLASSES[3]]
    parser = HfArgumentParser(classes, description="Fine-tune a pretrained backbone on labelled data.",
                              epilog=LAUNCH_HELP)
    parser.add_argument("--config", default=None, help="Recipe YAML; its values become defaults, flags win.")
    return parser


LAUNCH_HELP = (
    "Resume: --resume continues from the newest complete checkpoint in output_dir, --resume PATH from that one. "
    "Launch through accelerate: hftransfer train ... --accelerate_config NAME|PATH (templates: single_gpu, "
    "multi_gpu, fsdp, deepspeed_zero2, cpu; see `hftransfer accelerate-configs`) with --num_processes N and, "
    "for several machines, --num_machines, --machine_rank, --main_process_ip, --main_process_port.")


def load_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """Read a recipe YAML into one flat mapping of option name to value (sections flattened)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe file not found: {str(path)!r}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"recipe {str(path)!r} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"recipe {str(path)!r} must be a mapping of option: value, got {type(raw).__name__}")
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        # `model: bert-base-uncased` is the model option; `model: {model: ..., task: ...}` is a section.
        if key in SECTIONS and isinstance(value, dict):
            _merge_unique(flat, value, where=f"section {key!r} of {path}")
        else:
            _merge_unique(flat, {key: value}, where=str(path))
    return flat


def _merge_unique(flat: dict[str, Any], items: dict[str, Any], where: str) -> None:
    for key, value in items.items():
        if key in flat:
            raise ConfigError(f"option {key!r} is set twice in {where}")
        flat[key] = value


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
    pre = argparse.ArgumentParser(add_help=False)
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
    try:
        return placement_defaults(bool(known.fp16), bool(known.bf16), known.use_cpu)
    except PrecisionError as err:
        raise ConfigError(str(err)) from None


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


def parse_config(argv: list[str] | None = None) -> RunConfig:
    """Parse ``argv`` (flags, optionally ``--config RECIPE``) into a :class:`RunConfig`."""
    argv = expand_resume_flag(list(sys.argv[1:] if argv is None else argv))
    known = _peek_options(argv, {}, {"config": str, "task": str})

    recipe = load_recipe(known.config) if known.config else {}
    task_name = known.task or recipe.get("task") or ModelArguments.task
    task = get_task(task_name)
    parser = make_parser(task.options)
    valid = _option_names(parser) - {"config"}
    unknown = sorted(set(recipe) - valid)
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(map(repr, unknown))} in {known.config}; "
            f"options are the flags of `hftransfer train --task {task_name} --help` (e.g. model, train_file, "
            "learning_rate)"
        )

    if "hub_token" in recipe or any(a == "--hub_token" or a.startswith("--hub_token=") for a in argv or []):
        raise ConfigError("hub_token is not accepted (a token in a recipe or on the command line ends up in files, "
                          "logs and shell history); set HF_TOKEN or run `hf auth login`")
    explicit = frozenset(set(recipe) | _flags_given(argv, task.options))
    parser.set_defaults(**BASE_TRAINING_DEFAULTS)
    parser.set_defaults(**task.training_defaults)
    parser.set_defaults(**_placement_defaults(argv, recipe))
    parser.set_defaults(**_checkpoint_defaults(argv, recipe, explicit))
    parser.set_defaults(**recipe)
    try:
        parsed = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    except ValueError as err:  # raised by __post_init__ checks, ours and transformers'
        raise ConfigError(str(err)) from None
    model_args, data_args, transfer_args = parsed[:3]
    task_args = parsed[3] if task.options else None
    training_args = parsed[4 if task.options else 3]
    return RunConfig(model_args, data_args, transfer_args, training_args, task_args, explicit)
