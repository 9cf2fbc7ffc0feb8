"""Image files: folder layouts, listing files, image checks and colour-mode conversion."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
from datasets import Dataset
from PIL import Image

from hftransfer.data.tables import DataError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
# Folder names accepted for each split when a data_dir holds split subfolders.
SPLIT_FOLDERS = {
    "train": ("train", "training"),
    "validation": ("val", "valid", "validation", "dev"),
    "test": ("test", "testing"),
}


# Folders that archivers and tools leave beside data; never classes. Any other folder is a class, whatever its name.
TOOL_FOLDERS = {"__MACOSX", "__pycache__"}


def is_hidden(path: Path, root: Path) -> bool:
    """Hidden files and folders (``.DS_Store``, ``.ipynb_checkpoints``) and tool folders (``__MACOSX``) are not data."""
    return any(part.startswith(".") or part in TOOL_FOLDERS for part in path.relative_to(root).parts)


def scan_class_folders(root: Path, notes: list[str] | None = None) -> Dataset:
    """``root/<class>/**/<image>`` → a dataset of ``image`` (path) and ``label`` (the class folder's name).

    A class folder without a single image is an error that names it (a class silently dropped would change
    the label set); other files beside the images are skipped and counted in ``notes``.
    """
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden(p, root))
    if not classes:
        raise DataError(f"no class folders in {str(root)!r}; expected {root}/<class name>/<image files>")
    paths, labels, empty, skipped = [], [], [], Counter()
    for folder in classes:
        found = 0
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or is_hidden(path, root):
                continue
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                skipped[path.suffix.lower() or "(no extension)"] += 1
                continue
            paths.append(str(path))
            labels.append(folder.name)
            found += 1
        if not found:
            empty.append(folder.name)
    if empty:
        raise DataError(
            f"class folder(s) with no image file ({', '.join(sorted(IMAGE_EXTENSIONS))}) in "
            f"{str(root)!r}: {', '.join(map(repr, empty))}; add images or remove the folder(s)"
        )
    if skipped and notes is not None:
        kinds = ", ".join(f"{n} {suffix}" for suffix, n in skipped.most_common())
        notes.append(f"{root.name}: skipped {sum(skipped.values())} file(s) that are not images ({kinds})")
    return Dataset.from_dict({"image": paths, "label": labels})


def load_image_folder(data_dir: str, require_train: bool = True, notes: list[str] | None = None) -> dict[str, Dataset]:
    """Splits from an image folder: ``root/{train,val,test}/<class>/*`` or just ``root/<class>/*`` (train).

    ``require_train=False`` (evaluation) accepts split folders without ``train/``.
    """
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"data_dir not found or not a folder: {data_dir!r}")
    children = {p.name.lower(): p for p in root.iterdir() if p.is_dir() and not is_hidden(p, root)}
    splits = {}
    for split, names in SPLIT_FOLDERS.items():
        found = [children[name] for name in names if name in children]
        if found:
            splits[split] = scan_class_folders(found[0], notes)
    if splits and "train" not in splits and require_train:
        raise DataError(f"{data_dir!r} has split folders ({', '.join(sorted(children))}) but no train/ folder")
    return splits or {"train": scan_class_folders(root, notes)}


def resolve_listed_paths(ds: Dataset, column: str, listing: Path) -> Dataset:
    """Image paths in a CSV/JSON listing are taken relative to the listing file's folder unless absolute."""
    base = listing.expanduser().resolve().parent

    def resolve(batch):
        return {column: [str(p) if Path(p).is_absolute() else str(base / p) for p in batch[column]]}

    # a stream (IterableDataset) resolves its paths as it is read, and has no progress bar
    return ds.map(resolve, batched=True, **({"desc": "Resolving image paths"} if isinstance(ds, Dataset) else {}))


def to_mode(image: Image.Image, channels: int = 3) -> Image.Image:
    """Any PIL mode → RGB (or L for 1-channel models), keeping the image's real contrast.

    PIL's own ``convert`` clips 16-bit and 32-bit pixels to 0-255 (a 16-bit photo turns white), so deep
    images are first rescaled to 8 bits (``to_8bit``). Transparency is composed over white.
    """
    image = to_8bit(image)
    if channels == 1:
        return image.convert("L")
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in {"RGBA", "LA", "PA", "RGBa"}:
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


def to_8bit(image: Image.Image) -> Image.Image:
    """Single-channel images deeper than 8 bits (``I;16*``, ``I``, ``F``) as 8-bit ``L``, others unchanged.

    16-bit modes scale by their full range (65535 → 255), the way 8-bit data stored in 16 bits round-trips.
    32-bit integer and float images have no declared range: they scale by the smallest usual range that
    holds their values — [0, 1] (float), 8 bits, 16 bits — else by their own minimum and maximum.
    """
    if image.mode.startswith("I;16"):
        pixels = np.asarray(image, dtype=np.float64) / 65535.0
    elif image.mode in {"I", "F"}:
        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min(initial=0.0)), float(pixels.max(initial=0.0))
        if low >= 0 and high <= 1.0 and image.mode == "F":
            pass
        elif low >= 0 and high <= 255:
            pixels = pixels / 255.0
        elif low >= 0 and high <= 65535:
            pixels = pixels / 65535.0
        else:
            pixels = (pixels - low) / max(high - low, 1e-12)
    else:
        return image
    return Image.fromarray(np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8))  # 2-D uint8: mode L


def open_image(value) -> Image.Image:
    """A PIL image from what a dataset column holds: a path, a datasets Image dict, or an image already."""
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict):  # datasets.Image(decode=False): {"path": ..., "bytes": ...}
        if value.get("bytes"):
            return Image.open(io.BytesIO(value["bytes"]))
        value = value["path"]
    return Image.open(value)
