"""How hftransfer's start-up grows with the data: time to the first optimiser step, peak memory, cache disk.

Synthetic data at growing sizes, written to a temporary folder: short texts (5 to 20 words, 10 labels) as CSV
and as Parquet, and small JPEGs (64 px, 10 class folders). For each, ``hftransfer train --max_steps 20`` with
every other setting at its default (the offline MiniLM for texts, EfficientNet-Lite0 for images) runs twice on
the same caches: cold (empty datasets, image-check and feature caches) and warm (a second run on the same
files, which should reuse the tokenised datasets and the image check). Measured per run:

- start to first step: seconds from the process start to the first logged optimiser step (Python start-up and
  imports included, as a user waits for them);
- rows/s: rows over that time, the end-to-end preprocessing rate;
- peak RSS: the process's high-water mark (``process_stats.py``); with the data in memory-mapped Arrow files it
  should not grow with the rows beyond the pages of them being read;
- cache MiB: what the run left in the caches.

The process is stopped after its 20th step (the final evaluation of a 100,000-row validation split is not
start-up). Growth exponents are least-squares slopes of log(measure) over log(rows).

    python examples/offline_models.py && python benchmarks/data_scale.py                  # every size (long)
    python benchmarks/data_scale.py --texts 10000 100000 --images 1000 --formats csv       # a quicker subset
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

from process_stats import run_measured

REPO = Path(__file__).resolve().parent.parent
HFTRANSFER = str(Path(sys.executable).parent / "hftransfer")
FIRST_STEP = "'loss'"  # a Trainer log line of a training step
TEXT_FLAGS = ["--model", str(REPO / "pretrained" / "all-MiniLM-L6-v2")]
IMAGE_FLAGS = [
    "--task",
    "image-classification",
    "--timm_arch",
    "tf_efficientnet_lite0",
    "--weights",
    str(REPO / "pretrained" / "efficientnet-lite0.pth"),
    "--weights_key_map",
    str(REPO / "recipes" / "key_maps" / "efficientnet_pytorch_to_timm.yaml"),
]
WORDS = (
    "time year people way day man thing woman life child world school state family student group country "
    "problem hand part place case week company system program question work government number night point "
    "home water room mother area money story fact month lot right study book eye job word business issue "
    "side kind head house service friend father power hour game line end member law car city community name "
    "good new first last long great little own other old right big high different small large next early "
    "young important few public bad same able"
).split()


def write_texts(folder: Path, rows: int, fmt: str, seed: int = 0) -> Path:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 21, rows)
    picks = rng.integers(0, len(WORDS), int(lengths.sum()))
    words = np.asarray(WORDS, dtype=object)[picks]
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    texts = [" ".join(words[bounds[i] : bounds[i + 1]]) for i in range(rows)]
    table = pd.DataFrame({"text": texts, "label": [f"topic{k}" for k in rng.integers(0, 10, rows)]})
    path = folder / f"texts-{rows}.{fmt}"
    table.to_csv(path, index=False) if fmt == "csv" else table.to_parquet(path, index=False)
    return path


def write_images(folder: Path, count: int, seed: int = 0) -> Path:
    """``count`` 64 px JPEGs in 10 class folders: a class colour, a random lighter square, a little noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = folder / f"images-{count}"
    for i in range(count):
        label = i % 10
        pixels = np.full((64, 64, 3), (25 * label, 255 - 25 * label, 128), dtype=np.int16)
        x, y = rng.integers(0, 40, 2)
        pixels[y : y + 24, x : x + 24] += 60
        pixels += rng.integers(-8, 9, pixels.shape, dtype=np.int16)
        target = root / f"class{label}" / f"{i}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(target, quality=85)
    return root


def folder_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20 if path.exists() else 0.0


def measure(kind: str, source: Path, rows: int, caches: Path, out: Path) -> dict:
    """One ``hftransfer train --max_steps 20`` on these caches, stopped after its 20th step."""
    data = ["--train_file", str(source)] if kind == "text" else ["--data_dir", str(source)]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(caches / "datasets"),
        "HFTRANSFER_FEATURE_CACHE": str(caches / "features"),
        "HFTRANSFER_IMAGE_CHECK_CACHE": str(caches / "image_check"),
    }
    command = [
        HFTRANSFER,
        "train",
        *(TEXT_FLAGS if kind == "text" else IMAGE_FLAGS),
        *data,
        "--output_dir",
        str(out),
        "--max_steps",
        "20",
        "--logging_steps",
        "1",
        "--disable_tqdm",
        "true",
        "--seed",
        "0",
    ]
    done = run_measured(command, markers=(FIRST_STEP,), stop_after=(FIRST_STEP, 20), env=env, cwd=REPO)
    if FIRST_STEP not in done.marks:
        raise SystemExit(f"{source.name}: no training step was logged:\n{done.stderr[-3000:]}")
    first = done.marks[FIRST_STEP]
    return {
        "start_to_first_step_s": first,
        "rows_per_s": rows / first,
        "peak_rss_mib": done.peak_rss_mib,
        "cache_mib": folder_mib(caches),
    }


def growth(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of log(value) over log(rows)."""
    if len(points) < 2:
        return None
    xs, ys = [math.log(r) for r, _ in points], [math.log(v) for _, v in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def run_set(kind: str, fmt: str, sizes: list[int], tmp: Path) -> dict:
    rows = {}
    for size in sizes:
        folder = tmp / f"{kind}-{fmt}-{size}"
        folder.mkdir()
        source = write_texts(folder, size, fmt) if kind == "text" else write_images(folder, size)
        cold = measure(kind, source, size, folder / "caches", folder / "cold")
        warm = measure(kind, source, size, folder / "caches", folder / "warm")
        rows[size] = {"cold": cold, "warm": warm}
        print(
            f"{kind:5s} {fmt:8s} {size:>9,d}  cold {cold['start_to_first_step_s']:6.1f} s  warm "
            f"{warm['start_to_first_step_s']:6.1f} s  {cold['rows_per_s']:9.0f} rows/s  peak RSS "
            f"{cold['peak_rss_mib']:6.0f} / {warm['peak_rss_mib']:6.0f} MiB  cache {cold['cache_mib']:7.1f} MiB",
            flush=True,
        )
    exponents = {
        f"{measure_}_{run}": growth([(size, r[run][measure_]) for size, r in rows.items()])
        for measure_ in ("start_to_first_step_s", "peak_rss_mib")
        for run in ("cold", "warm")
    }
    return {"sizes": rows, "growth_exponents": exponents}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", nargs="*", type=int, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--images", nargs="*", type=int, default=[1_000, 10_000, 50_000])
    parser.add_argument("--formats", nargs="+", default=["csv", "parquet"], choices=["csv", "parquet"])
    parser.add_argument("--json", help="also write the figures to this file")
    opts = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in opts.formats if opts.texts else []:
            results[f"text-{fmt}"] = run_set("text", fmt, opts.texts, Path(tmp))
        if opts.images:
            results["image-jpeg"] = run_set("image", "jpeg", opts.images, Path(tmp))
    print("\ngrowth exponents (1 = linear in rows):")
    for name, result in results.items():
        shown = ", ".join(f"{k} {v:.2f}" for k, v in result["growth_exponents"].items() if v is not None)
        print(f"  {name}: {shown}")
    if opts.json:
        Path(opts.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
