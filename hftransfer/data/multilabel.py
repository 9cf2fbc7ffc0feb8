"""Multi-label targets: several labels per example, stored as a multi-hot float vector in the ``labels`` column.

Where an example's labels come from (``source_of``):

- ``label_columns``: one-hot 0/1 columns, one per label; the column names are the label names.
- a label column holding lists: JSON/JSONL/Parquet lists, or a Hub ``Sequence(ClassLabel)`` feature.
- a string label column split on ``label_separator`` (CSV/TSV cells such as ``"joy;surprise"``).

The label set is fixed from train, as for single labels (``class_names`` gives it an order); labels that only
validation or test carry are an error naming them; examples with no label are allowed and counted. The targets
are floats because the multi-label loss (binary cross-entropy with logits, which transformers applies when
``problem_type`` is ``multi_label_classification``) takes float targets.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from datasets import ClassLabel, Dataset, List, Value

from hftransfer.data.labels import (
    LABELS,
    LabelledData,
    check_case_variants,
    column_values,
    encode_labels,
    encode_labels_for_model,
)
from hftransfer.data.tables import DataError, require_columns

ONE_HOT_VALUES = {0, 1}


def is_multi_label(splits: dict[str, Dataset], data_args) -> bool:
    """The user's ``multi_label``, else detected: one-hot columns, a separator, or a label column of lists."""
    first = splits.get("train") or next(iter(splits.values()))
    holds_lists = _holds_lists(first, data_args.label_column) if not data_args.label_columns else False
    if data_args.multi_label is False and holds_lists:
        raise DataError(
            f"label column {data_args.label_column!r} holds lists of labels but multi_label is false; "
            "remove multi_label: false to train a multi-label model"
        )
    if data_args.multi_label is not None:
        return data_args.multi_label
    return bool(data_args.label_columns or data_args.label_separator or holds_lists)


def encode(splits: dict[str, Dataset], data_args, model_labels: list[str] | None = None) -> LabelledData:
    """The ``labels`` column, one label or several per example as the data and options say (``model_labels``: a
    trained model's labels, when evaluating it on new data)."""
    if is_multi_label(splits, data_args):
        data_args.multi_label = True  # saved with the run's config: eval and predict read the labels the same way
        return encode_multi_labels(splits, data_args, model_labels)
    if model_labels is not None:
        return encode_labels_for_model(splits, data_args.label_column, model_labels)
    return encode_labels(
        splits,
        data_args.label_column,
        data_args.class_names,
        data_args.allow_case_variant_labels,
        train_is_head=data_args.streaming,
    )


def label_source_columns(data_args) -> list[str]:
    """The columns that hold the labels: the one-hot columns, or the label column."""
    return list(data_args.label_columns or [data_args.label_column])


def _holds_lists(ds: Dataset, column: str) -> bool:
    if column not in ds.column_names:
        return False
    return isinstance(ds.features[column], (List, list))  # datasets 5 spells Sequence(...) as List(...)


def encode_multi_labels(splits: dict[str, Dataset], data_args, model_labels: list[str] | None = None) -> LabelledData:
    """Add a multi-hot ``labels`` column to every split; the label set is train's (or ``model_labels``'s)."""
    require_columns(splits, label_source_columns(data_args))
    rows = {split: labels_per_row(ds, data_args) for split, ds in splits.items()}
    if model_labels is not None:
        names = list(model_labels)
    else:
        names = _label_set(rows["train"], data_args)
    described = "train" if "train" in rows else next(iter(rows))
    notes = [f"multi-label: {len(names)} labels, {describe_counts(rows[described])} ({described})"]
    index = {name: i for i, name in enumerate(names)}
    encoded = {}
    for split, per_row in rows.items():
        unseen = sorted({label for row in per_row for label in row if label not in index})
        if unseen:
            shown = ", ".join(map(repr, unseen[:10])) + (" …" if len(unseen) > 10 else "")
            if model_labels is not None:
                raise DataError(f"labels the model does not know: {shown}; the model's labels: {', '.join(names)}")
            raise DataError(f"labels in the {split} split not seen in train: {shown}; train labels: {', '.join(names)}")
        encoded[split] = _with_targets(splits[split], per_row, index)
    return LabelledData(splits=encoded, label_names=names, notes=notes, multi_label=True)


def labels_per_row(ds: Dataset, data_args) -> list[list[str]]:
    """Each example's labels as a list of names (possibly empty)."""
    if data_args.label_columns:
        return _from_one_hot(ds, data_args.label_columns)
    column = data_args.label_column
    feature = ds.features[column]
    inner = getattr(feature, "feature", None)
    values = column_values(ds, column)
    if isinstance(inner, ClassLabel):
        return [[inner.int2str(v) for v in row or []] for row in values]
    if _holds_lists(ds, column):
        _check_one_label_type(values, column)
        return [[_name(v, column) for v in row or []] for row in values]
    if data_args.label_separator:
        return _split_strings(values, column, data_args.label_separator)
    return [[] if v is None else [_name(v, column)] for v in values]


def _check_one_label_type(rows: list, column: str) -> None:
    """Lists whose labels mix strings and integers (``[1, "joy"]``) are refused: ``1`` may be the id of a name or a
    name of its own, and the file does not say which."""
    kinds = {}
    for number, row in enumerate(rows):
        for value in row or []:
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                kinds.setdefault(type(value), (number, row))
    if len(kinds) > 1:
        number, row = kinds[int] if kinds[str][0] < kinds[int][0] else kinds[str]
        raise DataError(
            f"label column {column!r} mixes string and integer labels (row {number}: {row!r}); write "
            "every label the same way, all names or all integers"
        )


def _name(value, column: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(
            f"label column {column!r} holds a {type(value).__name__} label ({value!r}); labels are strings or integers"
        )
    return str(value).strip()


def _split_strings(values: list, column: str, separator: str) -> list[list[str]]:
    if any(v is not None and not isinstance(v, str) for v in values):
        bad = next(v for v in values if v is not None and not isinstance(v, str))
        raise DataError(
            f"label_separator {separator!r} splits strings, but label column {column!r} holds "
            f"{type(bad).__name__} values such as {bad!r}"
        )
    return [[part.strip() for part in (v or "").split(separator) if part.strip()] for v in values]


def _from_one_hot(ds: Dataset, columns: list[str]) -> list[list[str]]:
    table = {column: column_values(ds, column) for column in columns}
    for column, values in table.items():
        bad = [v for v in values if not (isinstance(v, (bool, int, float)) and v in ONE_HOT_VALUES)]
        if bad:
            raise DataError(
                f"one-hot column {column!r} holds {bad[0]!r} ({len(bad)} such rows); label_columns hold "
                "0 or 1 in every row"
            )
    return [[column for column in columns if table[column][i]] for i in range(len(ds))]


def _label_set(train_rows: list[list[str]], data_args) -> list[str]:
    """Train's labels, sorted, or in the order of ``class_names``/``label_columns``; refuses an empty set."""
    present = sorted({label for row in train_rows for label in row})
    if not present:
        raise DataError(
            "the training split has no labels at all (every example's label set is empty); a multi-label "
            "model needs at least one label"
        )
    if data_args.label_separator and not data_args.label_columns and max(len(row) for row in train_rows) < 2:
        example = next(row[0] for row in train_rows if row)
        raise DataError(
            f"label_separator {data_args.label_separator!r} splits none of the training labels (e.g. "
            f"{example!r}); give the separator the file uses, or drop label_separator for one label per "
            "example"
        )
    if data_args.label_columns:
        return list(data_args.label_columns)
    if not data_args.allow_case_variant_labels:
        check_case_variants(present, data_args.label_column)
    if data_args.class_names:
        extra = [label for label in present if label not in data_args.class_names]
        if extra:
            raise DataError(f"train labels {extra} are missing from class_names {data_args.class_names}")
        unused = [name for name in data_args.class_names if name not in set(present)]
        if unused:
            raise DataError(
                f"class_names has {len(data_args.class_names)} names but the training data has no "
                f"example of {', '.join(map(repr, unused))}; give one name per label the data uses"
            )
        return list(data_args.class_names)
    return present


def describe_counts(rows: list[list[str]]) -> str:
    """How many labels the examples carry: the mean, the share with several, and the unlabelled."""
    sizes = Counter(len(row) for row in rows)
    total = max(len(rows), 1)
    mean = sum(k * n for k, n in sizes.items()) / total
    several = sum(n for k, n in sizes.items() if k > 1) / total
    text = f"{mean:.2f} labels per example, {several:.0%} with two or more"
    if sizes.get(0):
        text += f", {sizes[0]} with none"
    return text


def _with_targets(ds: Dataset, per_row: list[list[str]], index: dict[str, int]) -> Dataset:
    targets = []
    for row in per_row:
        vector = [0.0] * len(index)
        for label in row:
            vector[index[label]] = 1.0
        targets.append(vector)
    if LABELS in ds.column_names:
        ds = ds.rename_column(LABELS, f"{LABELS}_original")
    return ds.add_column(LABELS, targets, feature=List(Value("float32"), length=len(index)))


def positives_per_label(ds: Dataset):
    """How many examples carry each label (the column sums of the multi-hot targets), as a float array."""
    return np.asarray(column_values(ds, LABELS), dtype=np.float64).sum(axis=0)
