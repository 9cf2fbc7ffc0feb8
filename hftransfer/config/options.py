"""hftransfer's own options: which backbone (model), which data, and how the weights are adapted (transfer).

Every field has a type, a default and a help text; it is a recipe key and a ``--flag`` of the same name.
Checks that need only the values themselves run in ``__post_init__``; checks that need the task or
strategy registries run where the config is assembled (``training/parse.py``). The choice names of options
that are not registries (heads, activations …) live here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hftransfer.config.limits import AT_LEAST_ONE, POSITIVE, ConfigError, Range, check_fields, option

__all__ = ["ConfigError", "DataArguments", "ModelArguments", "TransferArguments", "parse_duration"]

HEADS = ("linear", "mlp")
HEAD_ACTIVATIONS = ("gelu", "relu", "silu", "tanh")
FROZEN_NORM_STATS = ("keep", "update")
IMBALANCE_CHOICES = ("auto", "logit_adjustment", "class_weights", "none")
THRESHOLD_OBJECTIVES = ("micro", "macro")  # multi-label decision thresholds (evaluation/multilabel.py)
VALIDATION_GROUPS = ("auto", "none")  # carving whole groups of files named alike (data/groups.py)


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``10m``, ``1.5h`` or ``1h30m``."""
    value = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
        if seconds <= 0:
            raise ConfigError(f"time_budget must be positive, got {text!r}; write it like 90s, 10m, 1h or 1h30m")
        return seconds
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", value)
    if not parts or "".join(n + u for n, u in parts) != value.replace(" ", ""):
        raise ConfigError(f"time_budget {text!r} is not a duration; write it like 90s, 10m, 1h or 1h30m")
    seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if seconds <= 0:
        raise ConfigError(f"time_budget must be positive, got {text!r}")
    return seconds


@dataclass
class ModelArguments:
    """Which task and which pretrained checkpoint to start from."""

    task: str = field(
        default="text-classification",
        metadata={"help": "Registered task to run (see `hftransfer tasks`)."},
    )
    model: str | None = field(
        default=None,
        metadata={
            "help": "Pretrained backbone: a Hub id (e.g. bert-base-uncased, timm/resnet50.a1_in1k) or a "
            "local folder written by save_pretrained."
        },
    )
    timm_arch: str | None = field(
        default=None,
        metadata={
            "help": "A timm architecture name (e.g. resnet50, tf_efficientnet_lite0) instead of `model`; "
            "pretrained weights come from `weights` or, online, from timm."
        },
    )
    weights: str | None = field(
        default=None, metadata={"help": "Local weights file (.pth/.safetensors state dict) for timm_arch."}
    )
    weights_key_map: str | None = field(
        default=None,
        metadata={
            "help": "YAML/JSON list of [regex, replacement] pairs renaming the keys of `weights` "
            "(checkpoints saved under another naming)."
        },
    )
    candidates: list[str] | None = field(
        default=None,
        metadata={
            "help": "Backbones `hftransfer rank` compares with `model`: Hub ids or folders (in a recipe also "
            "mappings such as {timm_arch: ..., weights: ..., weights_key_map: ...})."
        },
    )
    revision: str = field(default="main", metadata={"help": "Hub revision (branch, tag or commit) of the model."})
    trust_remote_code: bool = field(
        default=False,
        metadata={
            "help": "Run Python code that a model folder or Hub repository ships (config.json auto_map). Off by "
            "default: only for sources you trust, since that code runs with your permissions."
        },
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
        metadata={
            "help": "A folder of labelled examples, for tasks that read folders (images: root/<class>/*, "
            "optionally under train/ val/ test/)."
        },
    )
    label_column: str = field(default="label", metadata={"help": "Column with the labels (strings or integers)."})
    class_names: list[str] | None = field(
        default=None,
        metadata={"help": "Names for integer labels 0..N-1 (e.g. negative positive), used in the saved config."},
    )
    validation_fraction: float | None = field(
        default=None,
        metadata={
            "range": Range(0, 1, low_open=True, high_open=True),
            "help": "Fraction of train carved out (stratified, seeded) when no validation split is given. "
            "Default: a tenth of train, at least 100 examples and two per class, at most a fifth of "
            "train and 5,000 examples.",
        },
    )
    validation_groups: str = field(
        default="auto",
        metadata={
            "choices": VALIDATION_GROUPS,
            "help": "auto: when the files' names show groups (frames of one clip: 00005_00001.ppm, "
            "00005_00002.ppm, ...), a carved validation split takes whole groups, so it holds no "
            "sibling of a training file; none: file by file.",
        },
    )
    max_train_samples: int | None = field(
        default=None,
        metadata=option("Use only this many training examples (seeded random subset).", range=AT_LEAST_ONE),
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata=option("Use only this many validation/test examples (seeded random subset).", range=AT_LEAST_ONE),
    )
    exclude_file: str | None = field(
        default=None,
        metadata={
            "help": "A list of examples to leave out, one 'split:id' per line (as hftransfer audit writes them: "
            "train:cats/003.jpg, test:17); the summary says how many were dropped."
        },
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata=option("Processes for preprocessing with datasets.map.", range=AT_LEAST_ONE)
    )
    na_values: list[str] | None = field(
        default=None,
        metadata={
            "help": "CSV/TSV cells read as missing besides empty ones (e.g. NA null). By default words such as "
            "NA, None or null are kept as text."
        },
    )
    multi_label: bool | None = field(
        default=None,
        metadata={
            "help": "Several labels per example (sigmoid outputs, a decision threshold per label). Default: "
            "detected, true when the label column holds lists or label_separator or label_columns "
            "is set."
        },
    )
    label_separator: str | None = field(
        default=None,
        metadata={"help": "Multi-label: split each string label on this (e.g. ';' for 'joy;surprise' in CSV/TSV)."},
    )
    label_columns: list[str] | None = field(
        default=None,
        metadata={
            "help": "Multi-label: one-hot 0/1 columns, one per label (named by the label), instead of label_column."
        },
    )
    threshold_objective: str = field(
        default="micro",
        metadata={
            "choices": THRESHOLD_OBJECTIVES,
            "help": "Multi-label: what each label's decision threshold is tuned for on validation: micro (the "
            "micro-F1 of all labels) or macro (each label's own F1: more recall on weak labels, less "
            "precision).",
        },
    )
    pos_weight: bool = field(
        default=False,
        metadata={
            "help": "Multi-label: weigh each label's positive examples by its negatives-to-positives ratio in "
            "train (BCE pos_weight, capped at 100); raises recall on rare labels."
        },
    )
    allow_case_variant_labels: bool = field(
        default=False,
        metadata={
            "help": "Keep labels that differ only by letter case (e.g. US and us) as separate classes; by "
            "default they are refused as a likely data mistake."
        },
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Read the training rows as they are needed (datasets' IterableDataset) instead of converting "
            "the whole training split first: for data bigger than the disk or not worth converting. "
            "Needs max_steps or time_budget; labels come from class_names or the first stream_head_rows "
            "rows; validation and test are read in full."
        },
    )
    stream_head_rows: int = field(
        default=10_000,
        metadata={
            "range": AT_LEAST_ONE,
            "help": "streaming: rows read from the start of the training stream to fix the label set (unless "
            "class_names gives it), carve validation (unless one is given) and sample texts.",
        },
    )
    shuffle_buffer: int = field(
        default=10_000,
        metadata={
            "range": AT_LEAST_ONE,
            "help": "streaming: training rows are shuffled within a buffer of this many rows (and the order of "
            "the stream's files), reshuffled on every pass.",
        },
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.exclude_file and self.streaming:
            raise ConfigError("exclude_file drops examples of loaded splits; it cannot go with streaming: true")
        if self.multi_label is False and (self.label_separator or self.label_columns):
            raise ConfigError(
                "label_separator and label_columns describe several labels per example; they cannot "
                "go with multi_label: false"
            )
        if self.label_separator is not None and not self.label_separator.strip():
            raise ConfigError(f"label_separator must hold a visible character, got {self.label_separator!r}")
        if self.label_columns is not None and len(self.label_columns) < 1:
            raise ConfigError("label_columns needs at least one column name")
        for listed in ("label_columns", "class_names"):
            names = getattr(self, listed) or []
            twice = sorted({name for name in names if names.count(name) > 1})
            if twice:
                raise ConfigError(
                    f"{listed} names {', '.join(map(repr, twice))} more than once ({names}); each name once"
                )


@dataclass
class TransferArguments:
    """How the pretrained weights are adapted (strategy, learning rates per depth, head) and how the run is kept.

    The options only one strategy reads (``lora_r``, ``probe_epochs`` …) are that strategy's own: its
    ``Strategy.options`` dataclass, registered with it (``strategies/``)."""

    strategy: str = field(
        default="auto",
        metadata={"help": "Transfer strategy (the choices are listed by `hftransfer train --help`)."},
    )
    layer_decay: float | None = field(
        default=None,
        metadata={
            "range": Range(0, 1, low_open=True),
            "help": "Layer-wise learning-rate decay: block i of n trains at learning_rate * layer_decay^(n+1-i) "
            "(e.g. 0.75; BEiT/ELECTRA style). Works with every strategy.",
        },
    )
    head_learning_rate: float | None = field(
        default=None, metadata=option("Learning rate of the head (default: learning_rate).", range=POSITIVE)
    )
    frozen_norm_stats: str = field(
        default="keep",
        metadata={
            "choices": FROZEN_NORM_STATS,
            "help": "BatchNorm in frozen parts: keep (running statistics stay the pretrained ones) or update "
            "(re-estimated on your data while the weights stay frozen).",
        },
    )
    head: str = field(default="linear", metadata=option("Classification head: linear or mlp.", choices=HEADS))
    head_hidden_sizes: list[int] | None = field(
        default=None,
        metadata=option("mlp head: hidden layer sizes, e.g. 1024 512 (default: 512).", range=AT_LEAST_ONE),
    )
    head_activation: str = field(
        default="gelu", metadata=option("mlp head activation: gelu, relu, silu or tanh.", choices=HEAD_ACTIVATIONS)
    )
    head_dropout: float = field(
        default=0.0,
        metadata=option("mlp head: dropout before each layer of the head.", range=Range(0, 1, high_open=True)),
    )
    pooling: str | None = field(
        default=None,
        metadata={
            "help": "Feature pooling of timm backbones (avg, max, avgmax, catavgmax, token, …); default: the "
            "backbone's own."
        },
    )
    cache_features: bool = field(
        default=True,
        metadata={
            "help": "When the backbone is frozen and no augmentation is active, compute its features once "
            "(cached on disk) and train the head on them."
        },
    )
    feature_cache_dir: str | None = field(
        default=None, metadata={"help": "Where cached features live (default: $HF_HOME/hftransfer/features)."}
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "range": AT_LEAST_ONE,
            "help": "Stop after this many evaluations without improvement of metric_for_best_model.",
        },
    )
    time_budget: str | None = field(
        default=None,
        metadata={
            "help": "Wall-clock budget for the whole run (e.g. 90s, 10m, 1h30m): the number of steps is fitted "
            "to it after measuring the first ones, and training stops in time for the final "
            "evaluation, calibration and saving."
        },
    )
    imbalance: str = field(
        default="auto",
        metadata={
            "choices": IMBALANCE_CHOICES,
            "help": "Long-tailed classes: logit_adjustment (after training, each class's logit lowered by its log "
            "prior in train: equal readiness to predict every class), class_weights (a balanced class-weighted "
            "loss), none, or auto (logit_adjustment when the largest training class is at least 3x the "
            "smallest). Single-label only; multi-label uses pos_weight.",
        },
    )
    calibrate: bool = field(
        default=True,
        metadata={
            "help": "Fit temperature scaling on the validation split after training and fold it into the "
            "classifier, so the saved model's scores are calibrated (predictions are unchanged)."
        },
    )
    dry_run: bool = field(
        default=False,
        metadata={
            "help": "Settle the run (read the data, make auto's measurement, choose every value) and print the "
            "plan: each option's value, where it came from and why; then stop, with no training and "
            "nothing written to output_dir."
        },
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into a non-empty output_dir (its files may be replaced)."}
    )
    channels_last: bool | None = field(
        default=None,
        metadata={
            "help": "Vision: train and evaluate with channels_last memory format (faster convolutions on CPUs, "
            "and on GPUs with tensor cores in bf16/fp16). Default: on for image models on a CPU "
            "(EfficientNet-Lite0: 1.8x faster steps), off on GPUs (not measured there yet)."
        },
    )

    def __post_init__(self) -> None:
        if self.head_hidden_sizes is not None and self.head != "mlp":
            raise ConfigError("head_hidden_sizes is for head: mlp")
        if self.head_hidden_sizes is not None and (not self.head_hidden_sizes or min(self.head_hidden_sizes) < 1):
            raise ConfigError(
                f"head_hidden_sizes must be one or more layer sizes of at least 1, got "
                f"{self.head_hidden_sizes} (a layer of 0 units passes nothing to the classifier)"
            )
        check_fields(self)
        if self.time_budget is not None:
            parse_duration(self.time_budget)
