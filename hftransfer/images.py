"""Image files: folder layouts, listing files, image checks and colour-mode conversion."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from datasets import Dataset
from PIL import Image

from hftransfer.data import DataError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
# Folder names accepted for each split when a data_dir holds split subfolders.
SPLIT_FOLDERS = {"train": ("train", "training"), "validation": ("val", "valid", "validation", "dev"),
                 "test": ("test", "testing")}


def is_hidden(path: Path, root: Path) -> bool:
    """Hidden files and folders (``.DS_Store``, ``.ipynb_checkpoints``, ``__MACOSX``) are never data."""
    return any(part.startswith((".", "__")) for part in path.relative_to(root).parts)


def scan_class_folders(root: Path) -> Dataset:
    """``root/<class>/**/<image>`` → a dataset of ``image`` (path) and ``label`` (the class folder's name)."""
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden(p, root))
    if not classes:
        raise DataError(f"no class folders in {str(root)!r}; expected {root}/<class name>/<image files>")
    paths, labels = [], []
    for folder in classes:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not is_hidden(path, root):
                paths.append(str(path))
                labels.append(folder.name)
    if not paths:
        raise DataError(f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {str(root)!r}")
    return Dataset.from_dict({"image": paths, "label": labels})


def load_image_folder(data_dir: str, require_train: bool = True) -> dict[str, Dataset]:
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
            splits[split] = scan_class_folders(found[0])
    if splits and "train" not in splits and require_train:
        raise DataError(f"{data_dir!r} has split folders ({', '.join(sorted(children))}) but no train/ folder")
    return splits or {"train": scan_class_folders(root)}


def resolve_listed_paths(ds: Dataset, column: str, listing: Path) -> Dataset:
    """Image paths in a CSV/JSON listing are taken relative to the listing file's folder unless absolute."""
    base = listing.expanduser().resolve().parent

    def resolve(batch):
        return {column: [str(p) if Path(p).is_absolute() else str(base / p) for p in batch[column]]}

    return ds.map(resolve, batched=True, desc="Resolving image paths")


def find_unreadable(paths: list[str], workers: int = 8) -> list[tuple[str, str]]:
    """(path, reason) for every file PIL cannot fully decode; run before training so nothing fails mid-epoch."""
    with ThreadPoolExecutor(max_workers=workers) as pool:  # decoding releases the GIL
        results = pool.map(_decode_problem, paths)
    return [(path, problem) for path, problem in zip(paths, results) if problem]


def _decode_problem(path: str) -> str | None:
    try:
        with Image.open(path) as image:
            image.draft("RGB", (64, 64))  # JPEG: decode at reduced scale; still reads every byte
            image.load()
    except FileNotFoundError:
        return "file not found"
    except Exception as err:  # PIL raises many types for bad files (UnidentifiedImageError, OSError, ...)
        return f"{type(err).__name__}: {err}"
    return None


def to_mode(image: Image.Image, channels: int = 3) -> Image.Image:
    """Grayscale, palette and transparent images → RGB (transparency over white), or L for 1-channel models."""
    if channels == 1:
        return image.convert("L")
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in {"RGBA", "LA", "PA"}:
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


def open_image(value) -> Image.Image:
    """A PIL image from what a dataset column holds: a path, a datasets Image dict, or an image already."""
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict):  # datasets.Image(decode=False): {"path": ..., "bytes": ...}
        if value.get("bytes"):
            import io

            return Image.open(io.BytesIO(value["bytes"]))
        value = value["path"]
    return Image.open(value)
