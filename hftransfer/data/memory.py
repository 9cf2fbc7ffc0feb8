"""Data a notebook already holds, given to ``hftransfer.finetune(train=..., validation=..., test=...)``.

Each split becomes a ``datasets.Dataset`` and then takes exactly the path a file's rows take (columns found or named,
labels checked and encoded, validation carved when none is given): a pandas ``DataFrame`` through
``Dataset.from_pandas``, a ``Dataset`` as it is, a ``DatasetDict`` given as ``train`` for its own splits, and for
images a list of ``(image, label)`` pairs, where an image is a PIL image or a path.
"""

from __future__ import annotations

import os
from pathlib import Path

from datasets import Dataset, DatasetDict, Features, Image, Value

from hftransfer.data.tables import SPLIT_ALIASES, SPLIT_FILES, DataError


def in_memory_splits(train, validation=None, test=None) -> dict[str, Dataset]:
    """The given splits as Datasets (a DatasetDict given as ``train`` brings its validation and test too)."""
    given = {"train": train, "validation": validation, "test": test}
    if isinstance(train, DatasetDict):
        parts = {SPLIT_ALIASES.get(name, name): split for name, split in train.items()}
        unknown = sorted(set(parts) - set(SPLIT_FILES))
        if unknown or "train" not in parts:
            raise DataError(
                f"the DatasetDict given as train has splits {', '.join(train)}; it needs a 'train' split, "
                f"and others named {', '.join(list(SPLIT_FILES)[1:])}"
            )
        given = {**parts, **{k: v for k, v in given.items() if k != "train" and v is not None}}
    return {split: as_dataset(value, split) for split, value in given.items() if value is not None}


def as_dataset(value, split: str) -> Dataset:
    """One split as a Dataset; anything else is refused naming what was given and what is accepted."""
    if isinstance(value, Dataset):
        return value
    if _is_dataframe(value):
        return Dataset.from_pandas(value, preserve_index=False)
    if isinstance(value, (list, tuple)) and value and all(_is_pair(item) for item in value):
        return _image_pairs(value)
    raise DataError(
        f"{split} holds a {type(value).__name__}; give a path, a pandas DataFrame, a datasets.Dataset "
        "(or a DatasetDict as train), or a list of (image, label) pairs"
    )


def is_in_memory(value) -> bool:
    """Whether ``value`` is data itself (not a path to it)."""
    return value is not None and not isinstance(value, (str, os.PathLike))


def _is_dataframe(value) -> bool:
    return type(value).__name__ == "DataFrame" and hasattr(value, "to_dict")  # pandas, without importing it


def _is_pair(item) -> bool:
    return isinstance(item, (list, tuple)) and len(item) == 2 and not isinstance(item[1], (list, dict))


def _image_pairs(pairs) -> Dataset:
    """(PIL image or path, label) pairs as an ``image``/``label`` table (paths stay paths, checked like a listing's)."""
    images = [image for image, _ in pairs]
    labels = [label for _, label in pairs]
    if all(isinstance(image, (str, os.PathLike)) for image in images):
        return Dataset.from_dict({"image": [str(Path(image).expanduser()) for image in images], "label": labels})
    if any(isinstance(image, (str, os.PathLike)) for image in images):
        raise DataError("the (image, label) pairs mix paths and images; give all of them one way")
    kind = Value("string") if all(isinstance(label, str) for label in labels) else Value("int64")
    return Dataset.from_dict({"image": images, "label": labels}, features=Features({"image": Image(), "label": kind}))
