"""A real multi-label image set from Caltech-101 photos: 2x2 mosaics labelled with the classes they show.

Each mosaic shows one to three classes (four photos, each class in at least one cell), so its labels are a set.
Train and validation mosaics are made from disjoint photos of Caltech's train split (24 and 6 per class),
test mosaics from its test split: no photo is seen in two splits. Everything is seeded, so the same call
gives the same files.

    python examples/caltech_mosaics.py [--out outputs/data/caltech-mosaics]

writes ``{train,validation,test}.jsonl`` (``{"image": "images/...jpg", "labels": [...]}``, paths relative to the
listing) and the JPEGs; then ``hftransfer train recipes/image_classification/efficientnet_lite0_caltech_mosaics.yaml``.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parent.parent
CALTECH = REPO.parent / "shared" / "data" / "caltech101"
CLASSES = (
    "airplanes",
    "Motorbikes",
    "Faces_easy",
    "Leopards",
    "watch",
    "ketch",
    "chandelier",
    "car_side",
    "bonsai",
    "grand_piano",
)
CELL = 112  # pixels per cell: a mosaic is 224x224, the backbones' usual input
COUNTS = {"train": 400, "validation": 100, "test": 200}
VALIDATION_PHOTOS = 6  # per class, taken from Caltech's train split (the rest make train mosaics)


def photos_by_split(root: Path, seed: int) -> dict[str, dict[str, list[Path]]]:
    rng = random.Random(seed)
    split_photos: dict[str, dict[str, list[Path]]] = {"train": {}, "validation": {}, "test": {}}
    for name in CLASSES:
        train = sorted((root / "train" / name).iterdir())
        rng.shuffle(train)
        split_photos["validation"][name] = train[:VALIDATION_PHOTOS]
        split_photos["train"][name] = train[VALIDATION_PHOTOS:]
        split_photos["test"][name] = sorted((root / "test" / name).iterdir())
    return split_photos


def mosaic(photos: list[Path]) -> Image.Image:
    canvas = Image.new("RGB", (2 * CELL, 2 * CELL))
    for index, path in enumerate(photos):
        with Image.open(path) as image:
            cell = ImageOps.fit(image.convert("RGB"), (CELL, CELL))
        canvas.paste(cell, ((index % 2) * CELL, (index // 2) * CELL))
    return canvas


def make_split(split: str, photos: dict[str, list[Path]], count: int, out: Path, rng: random.Random) -> Path:
    rows = []
    (out / "images").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        labels = rng.sample(CLASSES, rng.randint(1, 3))
        cells = labels + [rng.choice(labels) for _ in range(4 - len(labels))]  # every label in at least one cell
        rng.shuffle(cells)
        name = f"images/{split}_{i:04d}.jpg"
        mosaic([rng.choice(photos[c]) for c in cells]).save(out / name, quality=90)
        rows.append({"image": name, "labels": sorted(labels)})
    listing = out / f"{split}.jsonl"
    listing.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return listing


def make_mosaics(
    out: Path, counts: dict[str, int] | None = None, seed: int = 0, root: Path = CALTECH
) -> dict[str, Path]:
    """Write the mosaics and their listings under ``out``; returns the listing of each split."""
    counts = {**COUNTS, **(counts or {})}
    photos = photos_by_split(root, seed)
    rng = random.Random(seed + 1)
    return {
        split: make_split(split, photos[split], counts[split], out, rng) for split in ("train", "validation", "test")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "outputs" / "data" / "caltech-mosaics"))
    args = parser.parse_args()
    for split, listing in make_mosaics(Path(args.out)).items():
        print(f"{split}: {listing}")


if __name__ == "__main__":
    main()
