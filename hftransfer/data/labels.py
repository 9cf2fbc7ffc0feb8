"""Label sets and splits: the label map fixed from train, integer label ids, a carved validation split, subsets.

String labels are read with surrounding whitespace removed (``"pos "`` is ``"pos"``: a CSV artefact, never a
separate class); labels that differ only by letter case are refused unless the user keeps them apart.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from datasets import ClassLabel, Dataset, Json
from datasets.utils.stratify import stratified_shuffle_split_generate_indices

from hftransfer.data.groups import carve_groups, file_groups
from hftransfer.data.tables import DataError, require_columns

LABELS = "labels"  # the column the models read; always a new column (see encode_labels)


@dataclass
class LabelledData:
    """Splits with an integer ``labels`` column (a ``ClassLabel``) and the label names fixed from train."""

    splits: dict[str, Dataset]
    label_names: list[str]
    notes: list[str] = field(default_factory=list)
    columns: dict[str, str | None] = field(default_factory=dict)
    multi_label: bool = False  # then ``labels`` holds a multi-hot float vector per example (data/multilabel.py)
    value_ids: dict = field(default_factory=dict)  # a raw label value -> its id (streamed rows are encoded with it)
    head: Dataset | None = None  # streaming: the training rows read ahead of the stream (data/streaming.py)

    @property
    def streamed(self) -> bool:
        return self.head is not None

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    def config_fields(self) -> dict:
        """What a model's config records about the labels. Multi-label sets transformers' ``problem_type``: the
        loss is then binary cross-entropy and ``pipeline`` applies a sigmoid to each label."""
        fields = {
            "num_labels": len(self.label_names),
            "id2label": self.id2label,
            "label2id": self.label2id,
            "problem_type": "multi_label_classification" if self.multi_label else "single_label_classification",
        }
        return fields


def encode_labels(
    splits: dict[str, Dataset],
    label_column: str,
    label_names: list[str] | None,
    allow_case_variants: bool = False,
    train_is_head: bool = False,
) -> LabelledData:
    """Fix the label set from train and add an integer ``labels`` ClassLabel column to every split.

    ``train_is_head``: train holds only the first rows of a stream, so a name of ``label_names`` it lacks may come
    later (otherwise a name no training example has is refused).

    Label ids are written to a *new* column: mapping ids back into a string column makes datasets cast them
    back to strings (seen with CSV inputs), which then breaks the collator.
    """
    require_columns(splits, [label_column])
    train_feature = splits["train"].features[label_column]
    notes = []
    if isinstance(train_feature, ClassLabel):
        values_of = {split: column_values(ds, label_column) for split, ds in splits.items()}
        names = list(label_names or train_feature.names)
        if len(names) != train_feature.num_classes:
            raise DataError(
                f"class_names has {len(names)} names but {label_column!r} has {train_feature.num_classes} classes"
            )
        to_id = {i: i for i in range(len(names))}
    else:  # each split read (and stripped) once: train's values fix the label map and are encoded below
        stripped = {
            split: stripped_labels(column_values(ds, label_column), label_column) for split, ds in splits.items()
        }
        values_of, notes = {split: values for split, (values, _) in stripped.items()}, stripped["train"][1]
        to_id, names = _label_map(values_of["train"], label_column, label_names, every_name_used=not train_is_head)
        if not allow_case_variants:
            check_case_variants(names, label_column)
    if len(names) < 2:
        raise DataError(
            f"label column {label_column!r} has {len(names)} class(es) in train ({', '.join(map(str, names))}); "
            "classification needs at least two"
        )

    feature = ClassLabel(names=names)
    encoded = {}
    for split, ds in splits.items():
        values = values_of[split]
        unseen = sorted({v for v in values if v not in to_id}, key=str)
        if unseen:
            shown = ", ".join(map(repr, unseen[:10])) + (" …" if len(unseen) > 10 else "")
            raise DataError(f"labels in the {split} split not seen in train: {shown}; train labels: {', '.join(names)}")
        encoded[split] = _with_label_ids(ds, [to_id[v] for v in values], feature)
    return LabelledData(splits=encoded, label_names=names, notes=notes, value_ids=to_id)


def column_values(ds: Dataset, column: str) -> list:
    """A column as a Python list, converted by Arrow in one call: datasets 5 reads ``ds[column]`` row by row
    through its formatter (1,000,000 labels: about 20 seconds, each time a column is read).

    A JSON column whose values mix types (``"joy"`` in one row, ``1`` in another) is stored by datasets 5 as JSON
    text (its ``Json`` feature): those values are decoded here, so the label checks see ``"joy"`` and ``1``, not
    the quoted text ``'"joy"'``.
    """
    values = ds.with_format("arrow")[column].to_pylist()
    feature = ds.features[column]
    if isinstance(feature, Json):
        return [None if v is None else json.loads(v) for v in values]
    if isinstance(getattr(feature, "feature", None), Json):
        return [None if row is None else [None if v is None else json.loads(v) for v in row] for row in values]
    return values


def stripped_labels(values, column: str) -> tuple[list, list[str]]:
    """Labels with surrounding whitespace removed from strings, and a note naming the labels that changed."""
    values = list(values)
    changed = Counter(v for v in values if isinstance(v, str) and v != v.strip())
    if not changed:
        return values, []
    shown = ", ".join(f"{v!r} ({n} rows)" for v, n in changed.most_common(5)) + (" …" if len(changed) > 5 else "")
    note = f"label column {column!r}: surrounding spaces removed from {shown}"
    return [v.strip() if isinstance(v, str) else v for v in values], [note]


def check_case_variants(names: list[str], column: str) -> None:
    """Labels that differ only by letter case are almost always one class typed two ways: refuse, naming them."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.casefold(), []).append(name)
    variants = [group for group in groups.values() if len(group) > 1]
    if variants:
        shown = "; ".join(" / ".join(map(repr, group)) for group in variants[:5])
        raise DataError(
            f"label column {column!r} has labels that differ only by letter case: {shown}. Make them one "
            "label in the data, or set allow_case_variant_labels: true to keep them as separate classes"
        )


def _with_label_ids(ds: Dataset, ids: list[int], feature: ClassLabel) -> Dataset:
    if LABELS in ds.column_names:  # a user column named 'labels' is kept as the raw label source
        ds = ds.rename_column(LABELS, f"{LABELS}_original")
    return ds.add_column(LABELS, ids, feature=feature)


def encode_labels_for_model(splits: dict[str, Dataset], label_column: str, model_labels: list[str]) -> LabelledData:
    """Add the ``labels`` column with a trained model's ids, matching labels to the model's names.

    Used to evaluate a finished model on new data: a label the model does not know is an error naming it
    and the model's labels. Integer labels are matched as names ("0") when the model has such names, else
    read as ids into the model's names (training with ``class_names`` over integer labels does the same).
    """
    require_columns(splits, [label_column])
    model_ids = {name: i for i, name in enumerate(model_labels)}
    feature = ClassLabel(names=list(model_labels))
    encoded, notes = {}, []
    for split, ds in splits.items():
        column_feature = ds.features[label_column]
        values = column_values(ds, label_column)
        if isinstance(column_feature, ClassLabel):  # stored as ids of the dataset's own names: match by name
            values = [column_feature.int2str(v) for v in values]
        values = stripped_labels(values, label_column)[0]
        if (
            values
            and all(isinstance(v, int) and not isinstance(v, bool) for v in values)
            and not any(str(v) in model_ids for v in values)
            and all(0 <= v < len(model_labels) for v in values)
        ):
            values = [model_labels[v] for v in values]  # ids into the names, as class_names made them in training
            notes.append(
                f"label column {label_column!r} holds integers and the model's labels are names: read as the "
                "model's label ids ("
                + ", ".join(f"{i} = {name}" for i, name in enumerate(model_labels[:6]))
                + (" …" if len(model_labels) > 6 else "")
                + ")"
            )
        names = [str(v) for v in values]
        unknown = sorted({n for n in names if n not in model_ids})
        if unknown:
            shown = ", ".join(map(repr, unknown[:10])) + (" …" if len(unknown) > 10 else "")
            raise DataError(f"labels the model does not know: {shown}; the model's labels: {', '.join(model_labels)}")
        encoded[split] = _with_label_ids(ds, [model_ids[n] for n in names], feature)
    return LabelledData(splits=encoded, label_names=list(model_labels), notes=notes)


def _label_map(
    values: list, column: str, label_names: list[str] | None, every_name_used: bool = True
) -> tuple[dict, list[str]]:
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
        if every_name_used:
            _check_every_name_used(label_names, [n for n in label_names if n not in set(present)])
        return {name: i for i, name in enumerate(label_names)}, list(label_names)
    outside = [v for v in present if not 0 <= int(v) < len(label_names)]
    if outside:
        raise DataError(f"integer labels {outside} do not index class_names ({len(label_names)} names: {label_names})")
    if every_name_used:
        _check_every_name_used(label_names, [n for i, n in enumerate(label_names) if i not in set(present)])
    return {i: i for i in range(len(label_names))}, list(label_names)


def _check_every_name_used(label_names: list[str], unused: list[str]) -> None:
    """A class with no training example would be a class the model cannot learn, weighing on macro scores."""
    if unused:
        raise DataError(
            f"class_names has {len(label_names)} names but the training data has no example of "
            f"{', '.join(map(repr, unused))}; give one name per label the data uses"
        )


# The carved validation split's size when the user gives no validation_fraction: a tenth of train, but at least
# SMALL_VALIDATION examples (fewer rank epochs mostly by chance) and two per class, at most a fifth of train (so
# small sets keep most of their examples for training) and at most 5,000 (a standard error under 0.7 points; more
# only slows every evaluation down). No larger floor: every example carved is one the model does not learn from,
# and on small sets that costs more than a finer ranking of epochs gains (GTSRB, 1,000 images of 43 classes, auto:
# 0.771 test accuracy with 200 carved by an earlier floor of 300, 0.812 with 100, benchmarks/defaults.py).
VALIDATION_SHARE, VALIDATION_MAX, VALIDATION_CAP_SHARE = 0.1, 5000, 0.2
SMALL_VALIDATION = 100  # below this many examples, picking the best epoch is mostly chance: say so


def validation_size(num_train: int, num_classes: int) -> int:
    """How many training examples the rule above carves out as validation."""
    wanted = max(round(VALIDATION_SHARE * num_train), SMALL_VALIDATION, 2 * num_classes)
    return max(1, min(wanted, VALIDATION_MAX, round(VALIDATION_CAP_SHARE * num_train)))


def ensure_validation(data: LabelledData, fraction: float | None, seed: int, groups: str = "auto") -> LabelledData:
    """Carve a stratified, seeded validation split from train when none was given (``fraction`` of train, or by
    default ``validation_size``'s rule); with ``groups: auto``, files named alike go to one side whole
    (``data/groups.py``)."""
    if "validation" in data.splits:
        return data
    train = data.splits["train"]
    # Multi-label targets cannot be stratified by one column: a seeded random split (data.multi_label)
    ids = None if data.multi_label else train.with_format("arrow")[LABELS].to_numpy()
    per_class = [] if ids is None else [count for count in np.bincount(ids) if count]
    classes = len(data.label_names)
    size = round(len(train) * fraction) if fraction is not None else validation_size(len(train), classes)
    _check_carvable(size, len(train), 1 if ids is None else len(per_class), fraction)
    stratify = ids is not None and min(per_class) >= 2 and size >= len(per_class)
    how = (
        "stratified"
        if stratify
        else "random (multi-label)"
        if data.multi_label
        else "random (a class is too small to stratify)"
    )
    grouped = file_groups(train, ids) if groups == "auto" else None
    if grouped is None:
        train_rows, validation_rows = carve_rows(len(train), size, seed, ids if stratify else None)
    else:
        train_rows, validation_rows = carve_groups(size, seed, grouped[0], ids if stratify else None)
        how = f"{how}, {grouped[1]}"
    if ids is not None:
        train_rows, validation_rows = keep_every_class_in_train(
            train_rows, validation_rows, ids, data, None if grouped is None else grouped[0]
        )
    if not len(validation_rows):
        raise DataError(
            f"{len(train)} training examples of {classes} classes are too few to carve a validation split "
            "that leaves every class in train; give a validation_file (or validation_split) or more data"
        )
    data.splits["train"], data.splits["validation"] = train.select(train_rows), train.select(validation_rows)
    size = len(validation_rows)
    rule = f"{fraction:.0%}" if fraction is not None else f"{size / len(train):.0%} by the default rule"
    data.notes.append(f"validation: {size} examples carved from train ({rule}, {how}, seed {seed})")
    if size < SMALL_VALIDATION:
        error = 100 * (0.25 / size) ** 0.5
        data.notes.append(
            f"validation: {size} examples are too few to rank epochs reliably (an accuracy measured on "
            f"them is uncertain by up to ±{error:.0f} points); give a validation_file for a better "
            "choice"
        )
    return data


def _check_carvable(size: int, num_train: int, classes: int, fraction: float | None) -> None:
    """A carve must leave at least one validation example, and one training example of each class."""
    if 1 <= size <= num_train - classes:
        return
    if fraction is None or num_train <= classes:
        raise DataError(
            f"{num_train} training examples of {classes} classes are too few to carve a validation split "
            "from; give a validation_file (or validation_split) or more data"
        )
    raise DataError(
        f"validation_fraction {fraction:g} would carve {size} of the {num_train} training examples (at "
        f"least 1 is needed, and {classes} must stay in train); use a value from {1 / num_train:.3g} to "
        f"{(num_train - classes) / num_train:.3g}, or give a validation_file"
    )


def carve_rows(num_rows: int, size: int, seed: int, stratify_ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows) of ``train.train_test_split(test_size=size, seed=seed[,
    stratify_by_column=LABELS])``: the same split from the same generator, with the label ids read through Arrow
    (datasets 5 reads a stratify column row by row: 1,000,000 rows, most of a minute on every run)."""
    rng = np.random.default_rng(seed)
    if stratify_ids is None:
        permutation = rng.permutation(num_rows)
        return permutation[size:], permutation[:size]
    return next(stratified_shuffle_split_generate_indices(stratify_ids, num_rows - size, size, rng))


def keep_every_class_in_train(
    train_rows: np.ndarray, validation_rows: np.ndarray, ids: np.ndarray, data: LabelledData, groups: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """A class whose every example was carved into validation (a class of one file group, or too small to
    stratify) gets one of them back (its smallest group): the model cannot learn a class it never sees."""
    missing = sorted(set(ids[validation_rows].tolist()) - set(ids[train_rows].tolist()))
    if not missing:
        return train_rows, validation_rows
    moved = np.zeros(len(ids), dtype=bool)
    for label in missing:
        rows = validation_rows[ids[validation_rows] == label]
        if groups is None:
            moved[rows[0]] = True
        else:
            smallest = min(set(groups[rows].tolist()), key=lambda g: (int(np.sum(groups[rows] == g)), g))
            moved[rows[groups[rows] == smallest]] = True
    names = ", ".join(repr(data.label_names[label]) for label in missing[:5]) + (" …" if len(missing) > 5 else "")
    data.notes.append(
        f"validation: every example of {names} had been carved out; {int(moved.sum())} moved back to "
        "train (a model cannot learn a class it never sees)"
    )
    back = moved[validation_rows]
    return np.concatenate([train_rows, validation_rows[back]]), validation_rows[~back]


def finish_splits(data: LabelledData, data_args, seed: int) -> LabelledData:
    """The steps every task ends its loading with: a validation split if none was given, then subsets."""
    data = ensure_validation(data, data_args.validation_fraction, seed, data_args.validation_groups)
    return subsample(data, data_args.max_train_samples, data_args.max_eval_samples, seed)


def subsample(data: LabelledData, max_train: int | None, max_eval: int | None, seed: int) -> LabelledData:
    """Seeded random subsets, for quick runs and tests."""
    for split, limit in (("train", max_train), ("validation", max_eval), ("test", max_eval)):
        ds = data.splits.get(split)
        if ds is not None and limit is not None and len(ds) > limit:
            data.splits[split] = ds.shuffle(seed=seed).select(range(limit))
            data.notes.append(f"{split}: using {limit} of {len(ds)} examples (seed {seed})")
    return data
