"""How a finished image-classification model reads its inputs: image files, folders and globs for ``hftransfer
predict`` (each checked before any prediction runs), the encoder that turns them into tensors, stand-in images for
export checks, and how reports name examples.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import datasets
import torch

from hftransfer.data import image_check, images
from hftransfer.data.tables import DataError
from hftransfer.data.transforms import build_transforms, data_config_for


def holds_paths(ds, column: str) -> bool:
    """True for a column of file paths; False for images stored in the dataset (an Image feature)."""
    return getattr(ds.features[column], "dtype", None) in {"string", "large_string"}


def describe_examples(data, split: str) -> list[str]:
    """How the eval report names each example of a split: its file path (or its row for stored images)."""
    ds, column = data.splits[split], data.columns["image"]
    if holds_paths(ds, column):
        return list(ds[column])
    stored = ds.cast_column(column, datasets.Image(decode=False))[column]  # paths without decoding pixels
    return [(value or {}).get("path") or f"{split}[{i}]" for i, value in enumerate(stored)]


def read_prediction_inputs(items: list[str], options: dict) -> list[tuple[str, str]]:
    """Image files, folders (searched recursively) and glob patterns -> (name, path), every file checked."""
    given = [flag for flag in ("text_file", "csv") if options.get(flag)]
    if given:
        raise DataError(
            f"--{given[0]} reads texts, and this model classifies images; give image files, folders or globs"
        )
    paths = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in images.IMAGE_EXTENSIONS and not images.is_hidden(p, path)
            )
            if not found:
                raise DataError(f"no image files ({', '.join(sorted(images.IMAGE_EXTENSIONS))}) under {item!r}")
            paths += found
        elif path.is_file():
            paths.append(path)
        elif any(ch in item for ch in "*?["):
            found = sorted(Path(p) for p in glob.glob(os.path.expanduser(item), recursive=True) if Path(p).is_file())
            if not found:
                raise DataError(f"the pattern {item!r} matches no file")
            paths += found
        else:
            raise DataError(
                f"{item!r} is no image file, folder or glob pattern that exists, and this model classifies images"
                " (texts are for text models)"
            )
    names = [str(p) for p in paths]
    bad = image_check.find_unreadable(names)
    if bad:
        listed = "; ".join(f"{p} ({why})" for p, why in bad[:10]) + (" …" if len(bad) > 10 else "")
        raise DataError(f"{len(bad)} unreadable image input(s): {listed}")
    return [(name, name) for name in names]


class PredictionEncoder:
    """Images -> ``pixel_values`` with exactly the evaluation transform the model was scored with."""

    def __init__(self, processor):
        data_config = data_config_for(processor)
        _, self.transform = build_transforms(data_config, "none", 0.0)
        self.channels = data_config["input_size"][0]

    def __call__(self, payloads: list[str]) -> dict[str, torch.Tensor]:
        pixels = [self.transform(images.to_mode(images.open_image(p), self.channels)) for p in payloads]
        return {"pixel_values": torch.stack(pixels)}


def sample_payloads(n: int = 2) -> list:
    """Stand-in inputs (for an export check when no real data is at hand): flat grey and noise images."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (256, 320, 3), dtype=np.uint8)) for _ in range(n)]
