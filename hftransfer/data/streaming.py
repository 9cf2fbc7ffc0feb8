"""Streamed training data (``streaming: true``): training rows are read as they are needed, never converted whole.

For training data bigger than the disk (a Hub dataset) or not worth converting to Arrow first (a large local
file). What other runs read from the whole training split comes from the first rows of the stream, its *head*
(``stream_head_rows``), which goes through every check a loaded split does:

- the label set, unless ``class_names`` (or a Hub ``ClassLabel`` feature) gives it; a label first met later in
  the stream stops the run with an error that names it and ``class_names``;
- validation, when none is given: carved from the head by the usual rule (stratified, seeded) and never trained
  on; the head's other rows are trained on first, then the rest of the stream;
- samples, such as the texts the default ``max_length`` is derived from.

Validation and test are fixed sets read in full (``max_eval_samples`` caps them), so every evaluation scores the
same examples. Training reads the stream through a shuffle buffer (``shuffle_buffer`` rows and the order of the
stream's files, reshuffled on each pass); the schedule is counted in steps (``max_steps``, or what ``time_budget``
fits), since a stream has no length.
"""

from __future__ import annotations

import datasets
from datasets import Dataset, IterableDataset

from hftransfer.data import labels, tables
from hftransfer.data.labels import LABELS, LabelledData
from hftransfer.data.tables import DataError


def is_streamed(ds) -> bool:
    return isinstance(ds, IterableDataset)


def open_splits(data_args, given: dict | None = None) -> tuple[dict[str, Dataset], IterableDataset]:
    """The training stream, and the splits as loaded ones: train is the stream's head, validation and test whole."""
    if given:
        raise DataError(
            "streaming reads a file or a Hub dataset; data given in memory is already loaded: remove streaming: true"
        )
    tables.check_one_source(data_args)
    if data_args.train_file:
        paths = tables.split_paths(data_args)
        train_path = paths.pop("train")
        builder, kwargs = tables.builder_for(train_path, data_args.na_values)
        stream = datasets.load_dataset(
            builder, data_files={"train": str(train_path)}, split="train", streaming=True, **kwargs
        )
        others = {split: tables.read_table(path, split, data_args.na_values) for split, path in paths.items()}
        try:
            head = read_head(stream, data_args.stream_head_rows)
        except Exception as err:  # the parsers' own errors (pandas, pyarrow), as read_table reports them
            raise DataError(
                f"could not read train file {str(train_path)!r} as {builder}: {tables.root_cause(err)}"
            ) from None
    else:
        roles = tables.hub_split_roles(data_args, _hub_split_names(data_args))
        stream = _open_hub(data_args, roles.pop("train"), "train")
        others = {role: _hub_split_in_full(data_args, split, role) for role, split in roles.items()}
        head = read_head(stream, data_args.stream_head_rows)
    if head is None:
        raise DataError("the training stream is empty")
    return {"train": head, **others}, stream


def _hub_split_names(data_args) -> list[str]:
    try:
        return datasets.get_dataset_split_names(data_args.dataset, data_args.dataset_config)
    except Exception as err:  # datasets raises many types: an unreachable Hub, an unknown name or config
        raise DataError(f"could not open Hub dataset {data_args.dataset!r}: {tables.hub_failure(err)}") from err


def _open_hub(data_args, split: str, role: str) -> IterableDataset:
    try:
        return datasets.load_dataset(data_args.dataset, data_args.dataset_config, split=split, streaming=True)
    except Exception as err:  # datasets raises many types: a missing split, an unreachable Hub, a bad config
        raise DataError(
            f"could not open split {split!r} (for {role}) of Hub dataset {data_args.dataset!r}: "
            f"{tables.hub_failure(err)}"
        ) from err


def _hub_split_in_full(data_args, split: str, role: str) -> Dataset:
    """A fixed evaluation split, read from the stream (``max_eval_samples`` rows at most)."""
    loaded = read_head(_open_hub(data_args, split, role), data_args.max_eval_samples)
    if loaded is None:
        raise DataError(f"the {role} split {split!r} of {data_args.dataset!r} is empty")
    return loaded


def read_head(stream: IterableDataset, rows: int | None) -> Dataset | None:
    """The stream's first ``rows`` rows (all with None) as a loaded Dataset, checked like any split; None if empty."""
    # Stored images are read as their bytes: a decoded image would be encoded again to be stored (JPEGs lossily).
    raw = stream.decode(False) if stream.features is not None else stream
    head = list(raw.take(rows) if rows else raw)
    if not head:
        return None
    loaded = Dataset.from_list(head, features=raw.features)
    return loaded.cast(stream.features) if stream.features is not None else loaded


def finish(data: LabelledData, stream: IterableDataset, data_args, seed: int, check_row=None) -> LabelledData:
    """Validation carved from the head when none is given, then the training split becomes the labelled stream.

    ``check_row``: ``batch -> None`` raising a DataError for a row the head's checks would have refused (an empty
    text), run on every streamed batch.
    """
    if data.multi_label:
        raise DataError(
            "streaming reads one label per example; multi-label training needs the whole training split "
            "(remove streaming: true)"
        )
    head = data.splits["train"]
    given = "validation" in data.splits
    data = labels.ensure_validation(data, data_args.validation_fraction, seed, data_args.validation_groups)
    data = labels.subsample(data, None, data_args.max_eval_samples, seed)
    data.head = data.splits["train"]
    rows = stream if given else _after_head(data.head, stream, len(head))
    encoded = rows.map(_StreamLabels(data_args.label_column, data.value_ids, data.label_names, check_row), batched=True)
    if data_args.max_train_samples:
        encoded = encoded.take(data_args.max_train_samples)
        data.notes.append(f"train: the first {data_args.max_train_samples} examples of the stream")
    data.splits["train"] = encoded.shuffle(seed=seed, buffer_size=data_args.shuffle_buffer)
    labels_from = "class_names" if data_args.class_names else f"the first {len(head)} rows"
    data.notes.append(
        f"train: streamed, shuffled in a buffer of {data_args.shuffle_buffer:,} rows (seed {seed}); "
        f"labels fixed from {labels_from}"
    )
    return data


def _after_head(head_rest: Dataset, stream: IterableDataset, head_rows: int) -> IterableDataset:
    """The head's training rows (the ones not carved as validation), then the stream after the head.

    One generator, so one source read in the stream's own order, in which the head was read: the rows skipped are
    exactly the head's, however many files the stream has. With several processes each reads the rows and keeps
    its own batches; as two sources (``concatenate_datasets``) accelerate would give each process one source, the
    head to the first and the rest to the second. (A stream with a validation split is trained on as it is, its
    files shared out between data-loader workers and processes.) Rows go through as Python values, so a stream
    whose Arrow tables type strings as large_string (where its declared features say string) joins the head
    without a type clash.
    """
    raw = head_rest.remove_columns([LABELS])
    if f"{LABELS}_original" in raw.column_names:
        raw = raw.rename_column(f"{LABELS}_original", LABELS)
    return IterableDataset.from_generator(
        _head_then_rest, gen_kwargs={"head": raw, "stream": stream, "skip": head_rows}
    )


def _head_then_rest(head: Dataset, stream: IterableDataset, skip: int):
    yield from head
    yield from stream.skip(skip)


class _StreamLabels:
    """Streamed rows -> the ``labels`` ids the head fixed (picklable for DataLoader workers)."""

    def __init__(self, column: str, value_ids: dict, names: list[str], check_row=None):
        self.column, self.value_ids, self.names, self.check_row = column, value_ids, names, check_row

    def __call__(self, batch):
        if self.check_row is not None:
            self.check_row(batch)
        values = [v.strip() if isinstance(v, str) else v for v in batch[self.column]]
        unseen = sorted({v for v in values if v not in self.value_ids}, key=str)
        if unseen:
            raise DataError(
                f"label(s) {', '.join(map(repr, unseen[:10]))} first appear in the training stream after "
                f"its head; the head's labels: {', '.join(self.names)}. Give every label in class_names "
                "(or a larger stream_head_rows)"
            )
        ids = [self.value_ids[v] for v in values]
        out = {LABELS: ids}
        if LABELS in batch and self.column != LABELS:  # a user column named 'labels' is kept, as loaded splits do
            out[f"{LABELS}_original"] = batch[LABELS]
        return out
