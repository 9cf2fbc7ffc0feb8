"""Where each example came from: a ``source`` column of ``split:id`` that survives carving, subsets and filters.

``id`` is what a person can find the example by: the file's path relative to ``data_dir`` for an image folder,
the path as written in a listing, and the 0-based row number in file order (header excluded) for tables, Hub
splits and data given in memory. ``split`` is the split the user gave it in (a validation split carved from train
keeps ``train:…`` ids). ``hftransfer audit`` reports examples by it and ``train --exclude_file`` drops them by it.

The column rides along with the user's columns until the task prepares model inputs (those keep only what the
model reads), so every selection of rows keeps its ids without bookkeeping of its own.
"""

from __future__ import annotations

import os
from pathlib import Path

from datasets import Dataset

from hftransfer.data.tables import DataError
from hftransfer.files import readers

SOURCE = "hftransfer_source"
SPLITS = ("train", "validation", "test")


def with_row_ids(splits: dict[str, Dataset], values: dict[str, list[str]] | None = None) -> dict[str, Dataset]:
    """Every split with its ``source`` column: ``values`` per split where given (paths), else row numbers."""
    found = {}
    for split, ds in splits.items():
        if SOURCE in ds.column_names:  # read once already (a listing's paths were attached before resolving)
            found[split] = ds
            continue
        ids = (values or {}).get(split) or [str(row) for row in range(len(ds))]
        found[split] = ds.add_column(SOURCE, [f"{split}:{value}" for value in ids])
    return found


def relative_paths(paths: list[str], root: str) -> list[str]:
    """Image paths relative to the folder the user named (``data_dir``), with ``/`` separators."""
    base = os.path.abspath(Path(root).expanduser())  # not resolved: a linked file keeps the path it is listed by
    return [Path(os.path.relpath(os.path.abspath(path), base)).as_posix() for path in paths]


def split_of(source: str) -> str:
    return source.split(":", 1)[0]


def id_of(source: str) -> str:
    return source.split(":", 1)[1]


def read_exclude_file(path: str) -> list[str]:
    """The ``split:id`` lines of an exclude list (blank lines and ``#`` comments skipped), each split checked."""
    wanted = []
    for number, line in enumerate(readers.utf8_text(path, "exclude_file", "list of examples").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if ":" not in line or split_of(line) not in SPLITS:
            raise DataError(
                f"{path}, line {number}: {line!r} is not 'split:id' with split one of {', '.join(SPLITS)} "
                "(e.g. train:cats/003.jpg or test:17, as hftransfer audit writes them)"
            )
        wanted.append(line)
    return wanted


def exclude(splits: dict[str, Dataset], path: str, notes: list[str]) -> dict[str, Dataset]:
    """The splits without the examples ``path`` lists; an id that matches no example is an error naming it."""
    wanted = set(read_exclude_file(path))
    present = {split: ds.with_format("arrow")[SOURCE].to_pylist() for split, ds in splits.items()}
    unmatched = sorted(wanted - {source for values in present.values() for source in values})
    if unmatched:
        shown = ", ".join(map(repr, unmatched[:5])) + (" …" if len(unmatched) > 5 else "")
        example = next(iter(next(iter(present.values()))), "train:0")
        raise DataError(
            f"{len(unmatched)} id(s) in exclude_file {path!r} match no example: {shown}; ids look like {example!r}"
        )
    kept, dropped = {}, {}
    for split, ds in splits.items():
        keep = [row for row, source in enumerate(present[split]) if source not in wanted]
        dropped[split] = len(ds) - len(keep)
        kept[split] = ds.select(keep) if dropped[split] else ds
    counts = ", ".join(f"{n} from {split}" for split, n in dropped.items() if n)
    notes.append(f"exclude_file: {sum(dropped.values())} example(s) dropped as {path} lists ({counts})")
    return kept


def identify(splits: dict[str, Dataset], data_args, notes: list[str], values: dict | None = None) -> dict:
    """The splits with their ids, less the examples ``exclude_file`` lists (when given)."""
    splits = with_row_ids(splits, values)
    if data_args.exclude_file:
        splits = exclude(splits, data_args.exclude_file, notes)
        for split, ds in splits.items():
            if not len(ds):
                raise DataError(f"exclude_file {data_args.exclude_file!r} drops every example of the {split} split")
    return splits
