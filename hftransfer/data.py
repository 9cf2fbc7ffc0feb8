"""Loading labelled data: Hub datasets and local CSV/TSV/JSON/JSONL/Parquet files, label maps and splits.

Every check here runs before any model is built, so bad data fails in seconds with a message that names
the file, split, column or label at fault.
"""

from __future__ import annotations

import codecs
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from datasets import ClassLabel, Dataset

LABELS = "labels"  # the column the models read; always a new column (see encode_labels)

# datasets' builder and extra arguments per file extension.
FILE_FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t"}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
}
_TEXT_FORMATS = {".csv", ".tsv", ".json", ".jsonl"}


class DataError(ValueError):
    """Data that cannot be used; the message names the file, split, column or value at fault."""


@dataclass
class LabelledData:
    """Splits with an integer ``labels`` column (a ``ClassLabel``) and the label names fixed from train."""

    splits: dict[str, Dataset]
    label_names: list[str]
    notes: list[str] = field(default_factory=list)
    columns: dict[str, str | None] = field(default_factory=dict)

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))


def load_splits(data_args) -> dict[str, Dataset]:
    """The raw train/validation/test splits named by ``data_args`` (Hub dataset or local files)."""
    if data_args.dataset and data_args.train_file:
        raise DataError(
            f"give either dataset ({data_args.dataset!r}) or train_file ({data_args.train_file!r}), not both"
        )
    if data_args.train_file:
        return _load_files(data_args)
    if data_args.dataset:
        return _load_hub(data_args)
    raise DataError("no training data: set train_file (a local .csv/.tsv/.json/.jsonl/.parquet) or dataset (a Hub id)")


def _load_files(data_args) -> dict[str, Dataset]:
    files = {"train": data_args.train_file, "validation": data_args.validation_file, "test": data_args.test_file}
    splits = {}
    for split, path in files.items():
        if path is None:
            continue
        path = Path(path).expanduser()
        if not path.is_file():
            raise DataError(f"{split} file not found: {str(path)!r}")
        suffix = path.suffix.lower()
        if suffix not in FILE_FORMATS:
            raise DataError(
                f"unsupported {split} file type {suffix or '(none)'!r} for {str(path)!r}; "
                f"supported: {', '.join(FILE_FORMATS)}"
            )
        if suffix in _TEXT_FORMATS:
            check_utf8(path)
        builder, kwargs = FILE_FORMATS[suffix]
        try:
            loaded = datasets.load_dataset(builder, data_files={split: str(path)}, split=split, **kwargs)
        except Exception as err:  # datasets wraps parser errors in several types; name the file
            if "corresponds to no data" in str(err):  # datasets' way of saying the file has no rows
                raise DataError(f"the {split} split is empty: {str(path)!r} has no rows") from None
            raise DataError(f"could not read {split} file {str(path)!r} as {builder}: {err}") from err
        splits[split] = loaded
    return splits


def check_utf8(path: Path, chunk_size: int = 1 << 20) -> None:
    """Fail with the file and line when ``path`` is not UTF-8 (the parsers' own errors name neither)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                line += chunk[: err.start].count(b"\n")
                raise DataError(
                    f"{str(path)!r} is not UTF-8 text (bad byte at line {line}); re-save it as UTF-8"
                ) from None
            line += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise DataError(f"{str(path)!r} is not UTF-8 text (truncated character at the end)") from None


def _load_hub(data_args) -> dict[str, Dataset]:
    name = data_args.dataset
    try:
        dataset_dict = datasets.load_dataset(name, data_args.dataset_config)
    except Exception as err:
        offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}
        reason = "the Hub is unreachable (HF_HUB_OFFLINE=1) and it is not in the local cache" if offline else err
        raise DataError(
            f"could not load Hub dataset {name!r}"
            + (f" (config {data_args.dataset_config!r})" if data_args.dataset_config else "")
            + f": {reason}. Use local files (train_file, validation_file) instead."
        ) from err
    available = list(dataset_dict)
    wanted = {"train": data_args.train_split, "validation": data_args.validation_split, "test": data_args.test_split}
    if wanted["validation"] is None and "validation" in dataset_dict:
        wanted["validation"] = "validation"
    splits = {}
    for role, split_name in wanted.items():
        if split_name is None:
            continue
        if split_name not in dataset_dict:
            raise DataError(f"{name!r} has no split {split_name!r} (for {role}); its splits: {', '.join(available)}")
        splits[role] = dataset_dict[split_name]
    return splits


def require_columns(splits: dict[str, Dataset], columns: list[str]) -> None:
    """Each named column exists in every split; the error lists the columns that do exist."""
    for split, ds in splits.items():
        missing = [c for c in columns if c not in ds.column_names]
        if missing:
            raise DataError(
                f"column {missing[0]!r} not found in the {split} split; its columns: {', '.join(ds.column_names)}"
            )


def check_not_empty(splits: dict[str, Dataset]) -> None:
    for split, ds in splits.items():
        if len(ds) == 0:
            raise DataError(f"the {split} split is empty")


def encode_labels(splits: dict[str, Dataset], label_column: str, label_names: list[str] | None) -> LabelledData:
    """Fix the label set from train and add an integer ``labels`` ClassLabel column to every split.

    Label ids are written to a *new* column: mapping ids back into a string column makes datasets cast them
    back to strings (seen with CSV inputs), which then breaks the collator.
    """
    require_columns(splits, [label_column])
    train_feature = splits["train"].features[label_column]
    if isinstance(train_feature, ClassLabel):
        names = list(label_names or train_feature.names)
        if len(names) != train_feature.num_classes:
            raise DataError(
                f"class_names has {len(names)} names but {label_column!r} has {train_feature.num_classes} classes"
            )
        to_id = {i: i for i in range(len(names))}
    else:
        to_id, names = _label_map(list(splits["train"][label_column]), label_column, label_names)
    if len(names) < 2:
        raise DataError(
            f"label column {label_column!r} has {len(names)} class(es) in train ({', '.join(map(str, names))}); "
            "classification needs at least two"
        )

    feature = ClassLabel(names=names)
    encoded = {}
    for split, ds in splits.items():
        values = list(ds[label_column])
        unseen = sorted({v for v in values if v not in to_id}, key=str)
        if unseen:
            shown = ", ".join(map(repr, unseen[:10])) + (" …" if len(unseen) > 10 else "")
            raise DataError(
                f"labels in the {split} split not seen in train: {shown}; train labels: {', '.join(names)}"
            )
        ids = [to_id[v] for v in values]
        if LABELS in ds.column_names:  # a user column named 'labels' is kept as the raw label source
            ds = ds.rename_column(LABELS, f"{LABELS}_original")
        encoded[split] = ds.add_column(LABELS, ids, feature=feature)
    return LabelledData(splits=encoded, label_names=names)


def encode_labels_for_model(splits: dict[str, Dataset], label_column: str, model_labels: list[str]) -> LabelledData:
    """Add the ``labels`` column with a trained model's ids, matching labels to the model's names.

    Used to evaluate a finished model on new data: a label the model does not know is an error naming it
    and the model's labels. Integer labels are matched as names ("0") when the model has such names, else
    read as ids into the model's names (training with ``class_names`` over integer labels does the same).
    """
    require_columns(splits, [label_column])
    model_ids = {name: i for i, name in enumerate(model_labels)}
    feature = ClassLabel(names=list(model_labels))
    encoded = {}
    for split, ds in splits.items():
        column_feature = ds.features[label_column]
        values = list(ds[label_column])
        if isinstance(column_feature, ClassLabel):  # stored as ids of the dataset's own names: match by name
            values = [column_feature.int2str(v) for v in values]
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values) and not any(
                str(v) in model_ids for v in values) and all(0 <= v < len(model_labels) for v in values):
            values = [model_labels[v] for v in values]  # ids into the names, as class_names made them in training
        names = [str(v) for v in values]
        unknown = sorted({n for n in names if n not in model_ids})
        if unknown:
            shown = ", ".join(map(repr, unknown[:10])) + (" …" if len(unknown) > 10 else "")
            raise DataError(f"labels in the {split} split that the model does not know: {shown}; "
                            f"the model's labels: {', '.join(model_labels)}")
        if LABELS in ds.column_names:
            ds = ds.rename_column(LABELS, f"{LABELS}_original")
        encoded[split] = ds.add_column(LABELS, [model_ids[n] for n in names], feature=feature)
    return LabelledData(splits=encoded, label_names=list(model_labels))


def _label_map(values: list, column: str, label_names: list[str] | None) -> tuple[dict, list[str]]:
    missing = sum(v is None for v in values)
    if missing:
        raise DataError(f"label column {column!r} has {missing} empty value(s) in the train split")
    kinds = {type(v) for v in values}
    if kinds - {int, str, bool}:
        bad = sorted(k.__name__ for k in kinds - {int, str, bool})
        raise DataError(
            f"label column {column!r} holds {', '.join(bad)} values; classification needs string or integer labels"
        )
    if len(kinds) > 1:
        raise DataError(f"label column {column!r} mixes types {sorted(k.__name__ for k in kinds)}")
    present = sorted(set(values))
    if label_names is None:
        return {v: i for i, v in enumerate(present)}, [str(v) for v in present]
    if kinds == {str}:  # the names give the order of the ids
        extra = sorted(set(present) - set(label_names))
        if extra:
            raise DataError(f"train labels {extra} are missing from class_names {label_names}")
        return {name: i for i, name in enumerate(label_names)}, list(label_names)
    outside = [v for v in present if not 0 <= int(v) < len(label_names)]
    if outside:
        raise DataError(
            f"integer labels {outside} do not index class_names ({len(label_names)} names: {label_names})"
        )
    return {i: i for i in range(len(label_names))}, list(label_names)


def ensure_validation(data: LabelledData, fraction: float, seed: int) -> LabelledData:
    """Carve a stratified, seeded validation split from train when none was given."""
    if "validation" in data.splits:
        return data
    if not 0 < fraction < 1:
        raise DataError(f"validation_fraction must be between 0 and 1, got {fraction}")
    train = data.splits["train"]
    counts = Counter(list(train[LABELS]))
    stratify = min(counts.values()) >= 2 and round(len(train) * fraction) >= len(counts)
    parts = train.train_test_split(test_size=fraction, seed=seed, stratify_by_column=LABELS if stratify else None)
    data.splits["train"], data.splits["validation"] = parts["train"], parts["test"]
    how = "stratified" if stratify else "random (a class is too small to stratify)"
    data.notes.append(f"validation: {len(parts['test'])} examples carved from train ({fraction:.0%}, {how}, seed {seed})")
    return data


def finish_splits(data: LabelledData, data_args, seed: int) -> LabelledData:
    """The steps every task ends its loading with: a validation split if none was given, then subsets."""
    data = ensure_validation(data, data_args.validation_fraction, seed)
    return subsample(data, data_args.max_train_samples, data_args.max_eval_samples, seed)


def subsample(data: LabelledData, max_train: int | None, max_eval: int | None, seed: int) -> LabelledData:
    """Seeded random subsets, for quick runs and tests."""
    for split, limit in (("train", max_train), ("validation", max_eval), ("test", max_eval)):
        ds = data.splits.get(split)
        if ds is not None and limit is not None and len(ds) > limit:
            data.splits[split] = ds.shuffle(seed=seed).select(range(limit))
            data.notes.append(f"{split}: using {limit} of {len(ds)} examples (seed {seed})")
    return data
