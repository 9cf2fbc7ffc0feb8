"""Text classification (single sentences or sentence pairs) with any BERT-family encoder.

Tokenisation happens once, with ``datasets.map(batched=True)`` (cached on disk between runs); padding
happens per batch in the collator, so a batch of short phrases is not padded to the longest text of the
corpus.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field

import numpy as np
import pyarrow.compute as pc
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from hftransfer.backbones.checkpoints import model_path
from hftransfer.backbones.heads import without_head_code
from hftransfer.backbones.sentence_pooling import hub_fetcher, pool_as_trained, trained_pooling
from hftransfer.config.limits import NON_NEGATIVE, Range, check_fields
from hftransfer.data import labels, multilabel, source_ids, streaming, tables
from hftransfer.data.buckets import LengthBuckets, token_lengths
from hftransfer.data.labels import LABELS
from hftransfer.data.tables import DataError
from hftransfer.evaluation.metrics import compute_classification_metrics
from hftransfer.tasks.base import Task, TaskWords
from hftransfer.tasks.text_inputs import (
    TEXT_COLUMNS,
    PredictionEncoder,
    describe_examples,
    model_max_length,
    read_prediction_inputs,
    sample_payloads,
)

# Column names tried, in order, when the recipe names no text column (as transformers' run_glue does).
PAIR_COLUMNS = (
    ("sentence1", "sentence2"),
    ("premise", "hypothesis"),
    ("question1", "question2"),
    ("question", "sentence"),
)
LENGTH_SAMPLE = 2000  # training texts tokenised to choose the default max_length
LENGTH_PERCENTILE = 99
PARALLEL_ROWS = 100_000  # a split this long is tokenised by one process per core (tokenising_workers)
LENGTH_BUCKETS = 16  # batches per window sorted by length (data/buckets.py; measured in docs/benchmarks.md)


@dataclass
class TextClassificationArguments:
    """Options of the text-classification task."""

    text_column: str | None = field(
        default=None, metadata={"help": "Column with the text; default: 'text', 'sentence', … when present."}
    )
    text_pair_column: str | None = field(
        default=None, metadata={"help": "Optional second text column for sentence pairs (NLI, paraphrase)."}
    )
    max_length: int | None = field(
        default=None,
        metadata={
            "range": Range(2),  # a [CLS] and a [SEP] token at least
            "help": "Truncate texts to this many tokens. Default: the 99th percentile of the training texts' "
            "token lengths, rounded up to a multiple of 8 and capped at the model's limit.",
        },
    )
    length_buckets: int = field(
        default=LENGTH_BUCKETS,
        metadata={
            "range": NON_NEGATIVE,
            "help": "Training batches of similar lengths (less padding): the shuffled examples are sorted by "
            "length within windows of this many batches, and the batches are shuffled. 0: plain random "
            "batches.",
        },
    )

    def __post_init__(self) -> None:
        check_fields(self)


def resolve_text_columns(options: TextClassificationArguments, columns: list[str]) -> tuple[str, str | None]:
    """The text (and optional pair) column: the recipe's choice, else the first conventional name present."""
    if options.text_column:
        return options.text_column, options.text_pair_column
    for first, second in PAIR_COLUMNS:
        if first in columns and second in columns:
            return first, options.text_pair_column or second
    for name in TEXT_COLUMNS:
        if name in columns:
            return name, options.text_pair_column
    raise DataError(
        f"no text column given and none of {', '.join(TEXT_COLUMNS)} found; set text_column to one of: "
        f"{', '.join(columns)}"
    )


def load_data(config, model_labels: list[str] | None = None) -> labels.LabelledData:
    """Read the splits, check the columns and texts, fix the label map and carve validation if needed.

    With ``model_labels`` (evaluating a trained model) the labels take the model's ids and the splits are
    returned as found: no validation carved, no subsets.
    """
    data_args = config.data
    if data_args.data_dir:
        raise DataError(
            f"text-classification reads files (train_file, …) or a Hub dataset, not data_dir ({data_args.data_dir!r})"
        )
    stream = None
    if data_args.streaming and not model_labels:
        splits, stream = streaming.open_splits(data_args, config.inputs)
    else:
        splits = tables.load_splits(data_args, config.inputs)
    tables.check_not_empty(splits)
    text, pair = resolve_text_columns(config.task, next(iter(splits.values())).column_names)
    text_columns = [c for c in (text, pair) if c]
    label_columns = multilabel.label_source_columns(data_args)
    for column in set(label_columns) & set(text_columns):
        raise DataError(
            f"the text column and a label column are both {column!r}: the model would be "
            "given its answer; set text_column to the column of texts"
        )
    tables.require_columns(splits, text_columns + label_columns)
    check_texts_present(splits, text_columns)
    notes: list[str] = []
    if stream is None:
        splits = source_ids.identify(splits, data_args, notes)
    labelled = multilabel.encode(splits, data_args, model_labels or None)
    labelled.notes.extend(notes)
    labelled.columns = {"text": text, "text_pair": pair}
    if stream is not None:
        return streaming.finish(labelled, stream, data_args, config.training.seed, TextsPresent(text_columns))
    return labelled if model_labels else labels.finish_splits(labelled, data_args, config.training.seed)


class TextsPresent:
    """A streamed batch has every text (the check ``check_texts_present`` makes on a loaded split)."""

    def __init__(self, columns: list[str]):
        self.columns = columns

    def __call__(self, batch) -> None:
        for column in self.columns:
            if any(value is None for value in batch[column]):
                raise DataError(f"an empty value in text column {column!r} of the training stream; fill or drop it")


def check_texts_present(splits: dict, text_columns: list[str]) -> None:
    """Every example has its text (empty cells, and the values the user listed in na_values, are missing)."""
    for split, ds in splits.items():
        for column in text_columns:
            # counted by Arrow on the memory-mapped column: no Python string per row (a million rows: instant)
            values = ds.with_format("arrow")[column]
            if values.null_count:
                first = pc.index(pc.is_null(values), True).as_py()
                raise DataError(
                    f"{values.null_count} empty value(s) in text column {column!r} of the {split} split "
                    f"(first at row {first}); fill or drop them"
                )


def build_preprocessing(config, data, model_config):
    """The checkpoint's own tokenizer."""
    model_args = config.model
    tokenizer = AutoTokenizer.from_pretrained(
        model_path(model_args),
        revision=model_args.revision,
        trust_remote_code=model_args.trust_remote_code,
        cache_dir=model_args.cache_dir,
    )
    check_vocabulary(tokenizer, model_path(model_args))
    return tokenizer


def check_vocabulary(tokenizer, source) -> None:
    """Refuse a tokenizer that knows only its special tokens: transformers 5 builds one when a checkpoint has no
    tokenizer files, and every text then becomes [CLS] [UNK] ... [SEP]."""
    if tokenizer.vocab_size <= len(set(tokenizer.all_special_ids)):
        raise DataError(
            f"the tokenizer of {str(source)!r} has no vocabulary ({tokenizer.vocab_size} tokens, all "
            "special): the checkpoint lacks its tokenizer files (tokenizer.json, vocab.txt, ...); add them "
            "or name a checkpoint that has them"
        )


def default_max_length(tokenizer, data, limit: int, seed: int) -> int:
    """A truncation length that keeps 99% of the training texts whole, rounded up to a multiple of 8."""
    train = data.head if data.streamed else data.splits.get("train") or next(iter(data.splits.values()))
    sample = train.shuffle(seed=seed).select(range(min(LENGTH_SAMPLE, len(train))))
    texts, pairs = sample[data.columns["text"]], None
    if data.columns["text_pair"]:
        pairs = sample[data.columns["text_pair"]]
    lengths = [len(ids) for ids in tokenizer(list(texts), list(pairs) if pairs else None)["input_ids"]]
    wanted = int(math.ceil(np.percentile(lengths, LENGTH_PERCENTILE) / 8) * 8)
    return max(8, min(limit, wanted))


def prepare_datasets(config, tokenizer, data, model_config=None, augment: bool = True):
    """Tokenise every split once (truncated, unpadded) and keep only what the model reads (no augmentation)."""
    limit = model_max_length(tokenizer, model_config)
    chosen = config.task.max_length
    if chosen is not None and not 0 < chosen <= limit:
        raise DataError(f"max_length must be between 1 and the model's limit {limit}, got {chosen}")
    max_length = chosen or default_max_length(tokenizer, data, limit, config.training.seed)
    # A derived length truncates training only (that is where the compute goes): validation and test keep
    # texts whole up to the model's limit, so no evaluation text is judged on a fragment. A chosen length
    # applies to every split.
    eval_length = chosen or limit
    data.notes.append(
        f"max_length: {max_length} tokens"
        + ("" if chosen else f" (derived from the training texts; evaluation up to {limit})")
    )
    text, pair = data.columns["text"], data.columns["text_pair"]

    def tokenizer_for(length):
        def tokenize(batch):
            # Token ids only: the collator rebuilds the attention mask when it pads, and single texts have no
            # segment ids (all zeros, the model's default). A third of the per-row conversion and storage
            # (1,000,000 short texts: see benchmarks/data_scale.py in docs/benchmarks.md).
            return tokenizer(
                batch[text],
                batch[pair] if pair else None,
                truncation=True,
                max_length=length,
                return_attention_mask=False,
                return_token_type_ids=None if pair else False,
            )

        return tokenize

    prepared = {}
    for split, ds in data.splits.items():
        if streaming.is_streamed(ds):  # tokenised as it is read
            prepared[split] = ds.map(
                tokenizer_for(max_length),
                batched=True,
                remove_columns=[c for c in data.head.column_names if c != LABELS],
            )
            continue
        workers = tokenising_workers(config, len(ds))
        if workers and config.data.preprocessing_num_workers is None:
            data.notes.append(
                f"preprocessing_num_workers: {workers} for {split} ({len(ds):,} rows, one process per core)"
            )
        prepared[split] = ds.map(
            tokenizer_for(max_length if split == "train" else eval_length),
            batched=True,
            num_proc=workers,
            remove_columns=[c for c in ds.column_names if c != LABELS],
            desc=f"Tokenising {split}",
        )
    return prepared


def train_sampler(config, dataset, batch_size: int):
    """Batches of similar lengths in random order (``data/buckets.py``), unless ``length_buckets`` is 0."""
    window = config.task.length_buckets
    lengths = token_lengths(dataset) if window else None
    return None if lengths is None else LengthBuckets(lengths, batch_size, window, config.training.seed)


def tokenising_workers(config, rows: int) -> int | None:
    """The user's ``preprocessing_num_workers``; else, for a split of ``PARALLEL_ROWS`` rows or more, one process
    per core (at most 8): tokenising converts every row in Python, one core's work per process. Fewer rows
    tokenise in seconds, less than starting the processes costs."""
    chosen = config.data.preprocessing_num_workers
    if chosen is not None or rows < PARALLEL_ROWS:
        return chosen
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cores, 8) if cores > 1 else None


def build_model(config, data, model_config=None):
    """The pretrained encoder with a fresh classification head sized for the user's labels, pooled as the encoder
    was trained when it is a sentence encoder (backbones/sentence_pooling.py)."""
    model_args = config.model
    path = model_path(model_args)
    head_config = without_head_code(
        copy.deepcopy(
            model_config
            or AutoConfig.from_pretrained(
                path,
                revision=model_args.revision,
                trust_remote_code=model_args.trust_remote_code,
                cache_dir=model_args.cache_dir,
            )
        )
    )
    for key, value in data.config_fields().items():
        setattr(head_config, key, value)
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        config=head_config,
        # A checkpoint with another head (e.g. an earlier fine-tune) gets a new one instead of an error.
        ignore_mismatched_sizes=True,
        # transformers 5 loads in the checkpoint's dtype by default; training keeps fp32 master weights
        # (bf16/fp16 are applied as mixed precision by the Trainer), whatever dtype the checkpoint was saved in.
        dtype=torch.float32,
        revision=model_args.revision,
        trust_remote_code=model_args.trust_remote_code,
        cache_dir=model_args.cache_dir,
    )
    mode, source = trained_pooling(
        path if os.path.isdir(path) else None,
        None if os.path.exists(path) else hub_fetcher(path, model_args.revision, model_args.cache_dir),
    )
    if mode is not None:
        pool_as_trained(model, mode, source)
    return model


def suggest_training_args(model_config) -> dict:
    """A learning rate by encoder width: small encoders want larger steps than base or large ones.

    Measured here: MiniLM-L6 (hidden 384) on 12,000 SST-2 phrases, one epoch, reached 0.844 dev accuracy at
    5e-5, 0.852 at 1e-4 and 0.811 at 2e-4 (4,000 phrases, two epochs). For base (768) and large (1024)
    encoders the published GLUE grids (BERT, RoBERTa, ELECTRA) favour 2e-5 to 5e-5, lower for larger models.
    """
    hidden = getattr(model_config, "hidden_size", None) or getattr(model_config, "d_model", None) or 768
    if hidden <= 512:
        return {"learning_rate": 1e-4}
    if hidden <= 768:
        return {"learning_rate": 5e-5}
    return {"learning_rate": 2e-5}


def build_collator(config, tokenizer):
    # Multiples of 8 let tensor cores work on fp16/bf16; on fp32 they only add padding.
    multiple = 8 if (config.training.fp16 or config.training.bf16) else None
    return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple)


TASK = Task(
    name="text-classification",
    description="Classify texts or text pairs with a BERT-family encoder (AutoModelForSequenceClassification).",
    options=TextClassificationArguments,
    load_data=load_data,
    build_preprocessing=build_preprocessing,
    prepare_datasets=prepare_datasets,
    build_model=build_model,
    build_collator=build_collator,
    compute_metrics=compute_classification_metrics,
    suggest_training_args=suggest_training_args,
    auto_model=AutoModelForSequenceClassification,
    auto_processor=AutoTokenizer,
    # the files a tokenizer is read from: the fast tokenizer's, or a slow one's vocabulary
    processor_files=(
        "tokenizer.json",
        "vocab.txt",
        "vocab.json",
        "spiece.model",
        "sentencepiece.bpe.model",
        "tokenizer.model",
    ),
    describe_examples=describe_examples,
    read_prediction_inputs=read_prediction_inputs,
    prediction_encoder=PredictionEncoder,
    sample_payloads=sample_payloads,
    input_axes={name: ("batch", "sequence") for name in ("input_ids", "attention_mask", "token_type_ids")},
    train_sampler=train_sampler,
    words=TaskWords(
        pipeline_example='"I really enjoyed this film."',
        cli_example='"I really enjoyed this film."',
        inputs="Texts",
        shift_examples="other domains, writing styles, lengths",
    ),
    training_defaults={
        "learning_rate": 5e-5,  # replaced by suggest_training_args unless the user sets one
        "num_train_epochs": 3,
        "per_device_train_batch_size": 32,
        "per_device_eval_batch_size": 64,
        # Not "group_by_length": on 4,000 SST-2 phrases (MiniLM, one epoch, seeds 42 and 43) it doubled
        # throughput (95 vs 45 samples/s) but cost 1.4 points of dev accuracy (0.810/0.805 vs 0.819/0.823).
        # length_buckets (data/buckets.py) gives the speed without the cost: benchmarks/text_throughput.py,
        # 3 seeds, 68.1 samples/s and 0.828 dev accuracy against 30.6 and 0.823 in plain random batches.
    },
)
