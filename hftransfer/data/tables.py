"""Loading tables: Hub datasets and local CSV/TSV/JSON/JSONL/Parquet files, with errors that name the cause.

Every check here runs before any model is built, so bad data fails in seconds with a message that names
the file, line, split or column at fault.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset

from hftransfer.errors import HftransferError

logger = logging.getLogger("hftransfer")

# datasets' builder and extra arguments per file extension.
FILE_FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t"}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
}
_TEXT_FORMATS = {".csv", ".tsv", ".json", ".jsonl"}
SPLIT_FILES = {"train": "train_file", "validation": "validation_file", "test": "test_file"}
# Every option that names data on disk or on the Hub (data given in memory excludes them all).
SOURCE_OPTIONS = ("train_file", "dataset", "data_dir", "validation_file", "test_file")
# Other names of the validation split (a DatasetDict's, a folder's, --split's).
SPLIT_ALIASES = {"val": "validation", "valid": "validation", "dev": "validation"}


class DataError(HftransferError):
    """Data that cannot be used; the message names the file, split, column or value at fault."""


def load_splits(data_args, given: dict[str, Dataset] | None = None) -> dict[str, Dataset]:
    """The raw train/validation/test splits: ``given`` in memory (the Python API's), else those ``data_args`` names
    (Hub dataset or local files)."""
    check_one_source(data_args, given)
    if given:
        return dict(given)
    if data_args.train_file:
        return {split: read_table(path, split, data_args.na_values) for split, path in split_paths(data_args).items()}
    return _load_hub(data_args)


def check_one_source(data_args, given: dict | None = None) -> None:
    """Local files, a Hub dataset or data given in memory: exactly one of them."""
    if given:
        check_only_in_memory({option: getattr(data_args, option, None) for option in SOURCE_OPTIONS})
        return
    if data_args.dataset and data_args.train_file:
        raise DataError(
            f"give either dataset ({data_args.dataset!r}) or train_file ({data_args.train_file!r}), not both"
        )
    if not (data_args.train_file or data_args.dataset):
        raise DataError(
            "no training data: set train_file (a local .csv/.tsv/.json/.jsonl/.parquet) or dataset (a Hub id)"
        )


def check_only_in_memory(options: dict[str, Any]) -> None:
    """Data given in memory is the only source: ``options`` (option name → value) names no other."""
    named = [f"{option} ({value!r})" for option, value in options.items() if value is not None]
    if named:
        raise DataError(f"data was given in memory and as {', '.join(named)}; give one source")


def split_paths(data_args) -> dict[str, Path]:
    """Each split's local file, checked (see ``check_data_file``), with a warning for one that repeats train."""
    paths = {
        split: Path(getattr(data_args, option)).expanduser()
        for split, option in SPLIT_FILES.items()
        if getattr(data_args, option) is not None
    }
    for split, path in paths.items():
        check_data_file(path, split)
    warn_if_same_data(paths)
    return paths


def check_data_file(path: Path, split: str) -> None:
    """An existing, non-empty file of a supported type (and UTF-8 when it is text)."""
    if path.is_dir():
        raise DataError(
            f"{split} file {str(path)!r} is a folder; give a .csv/.tsv/.json/.jsonl/.parquet file "
            "(a folder of images per class is data_dir)"
        )
    if not path.is_file():
        raise DataError(f"{split} file not found: {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix not in FILE_FORMATS:
        raise DataError(
            f"unsupported {split} file type {suffix or '(none)'!r} for {str(path)!r}; "
            f"supported: {', '.join(FILE_FORMATS)}"
        )
    if path.stat().st_size == 0:
        raise DataError(f"{split} file {str(path)!r} is empty (0 bytes)")
    if suffix in _TEXT_FORMATS:
        check_utf8(path)


def read_table(path: Path, split: str, na_values: list[str] | None = None) -> Dataset:
    """One file as a Dataset; a parser failure names the file and the parser's own cause (with its line)."""
    builder, kwargs = builder_for(path, na_values)
    try:
        return datasets.load_dataset(builder, data_files={split: str(path)}, split=split, **kwargs)
    except Exception as err:  # datasets wraps the parsers' errors (pandas, pyarrow) in its own types
        cause = root_cause(err)
        if "corresponds to no data" in str(err) or "No columns to parse" in str(cause):
            raise DataError(f"the {split} split is empty: {str(path)!r} has no rows") from None
        raise DataError(f"could not read {split} file {str(path)!r} as {builder}: {cause}") from None


def builder_for(path: Path, na_values: list[str] | None = None) -> tuple[str, dict[str, Any]]:
    """datasets' builder for a file and its arguments."""
    builder, kwargs = FILE_FORMATS[path.suffix.lower()]
    if builder == "csv":
        # pandas reads NA, None, null, n/a … as missing by default: in a text column those are words. Only
        # empty cells (and the values the user names) are missing.
        kwargs = {**kwargs, "keep_default_na": False, "na_values": ["", *(na_values or [])]}
    return builder, kwargs


def root_cause(err: BaseException) -> str:
    while (err.__cause__ or err.__context__) is not None:
        err = err.__cause__ or err.__context__
    return " ".join(f"{type(err).__name__}: {err}".split())


def warn_if_same_data(paths: dict[str, Path]) -> None:
    """Validation or test data identical to train scores memory, not generalisation: say so (it may be deliberate)."""
    train = paths.get("train")
    for split in ("validation", "test"):
        other = paths.get(split)
        if train is None or other is None or not _same_content(train, other):
            continue
        logger.warning(
            "the %s file %s holds exactly the training data (%s): its scores will not measure how the "
            "model does on new data, and best-checkpoint selection will favour memorisation",
            split,
            other,
            train,
        )


def _same_content(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    if a.stat().st_size != b.stat().st_size:
        return False
    return _sha256(a) == _sha256(b)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


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
        raise DataError(
            f"could not load Hub dataset {name!r}"
            + (f" (config {data_args.dataset_config!r})" if data_args.dataset_config else "")
            + f": {hub_failure(err)}. Use local files (train_file, validation_file) instead."
        ) from err
    return {role: dataset_dict[split] for role, split in hub_split_roles(data_args, list(dataset_dict)).items()}


def hub_split_roles(data_args, available: list[str]) -> dict[str, str]:
    """Which of a Hub dataset's splits trains, validates and tests (``validation`` by default, when it has one); a
    split it lacks is an error listing the ones it has."""
    wanted = {"train": data_args.train_split, "validation": data_args.validation_split, "test": data_args.test_split}
    if wanted["validation"] is None and "validation" in available:
        wanted["validation"] = "validation"
    for role, split in wanted.items():
        if split is not None and split not in available:
            raise DataError(
                f"{data_args.dataset!r} has no split {split!r} (for {role}); its splits: {', '.join(available)}"
            )
    return {role: split for role, split in wanted.items() if split is not None}


def hub_failure(err: Exception) -> str:
    """Why a Hub dataset could not be read, in words (offline, the usual cause here, is named as such)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return "the Hub is unreachable (HF_HUB_OFFLINE=1) and it is not in the local cache"
    return str(err)


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
