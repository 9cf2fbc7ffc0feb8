"""A 10-epoch linear probe on hymenoptera: cached frozen features vs. running the frozen backbone every epoch.

Both arms are the shipped EfficientNet-Lite0 recipe through ``hftransfer train --strategy linear_probe`` with
the same seed, epochs, batch size and learning rate, in their own processes, one after the other; only
``--cache_features`` differs. The cached arm starts from an empty cache, so its time includes computing the
features once; a third run shows the warm-cache time (features already on disk). Two times per arm: the
training phase (``train_runtime``: ten epochs with an evaluation each; for the cached arms, computing or
reading the features plus the head's epochs) and the whole command as a user waits for it, which adds what
both arms share (start-up, loading, decoding every image once to check it, the final evaluation through
the full model).

    python examples/offline_models.py && python benchmarks/linear_probe_cache.py [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "image_classification" / "efficientnet_lite0_hymenoptera.yaml"


def probe(out: str, cache: bool, cache_dir: str, epochs: float, seed: int) -> dict:
    start = time.perf_counter()
    subprocess.run(
        [
            str(Path(sys.executable).parent / "hftransfer"),
            "train",
            str(RECIPE),
            "--output_dir",
            out,
            "--strategy",
            "linear_probe",
            "--num_train_epochs",
            str(epochs),
            "--seed",
            str(seed),
            "--cache_features",
            str(cache).lower(),
            "--feature_cache_dir",
            cache_dir,
            "--disable_tqdm",
            "true",
        ],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    wall = time.perf_counter() - start
    train = json.loads((Path(out) / "train_results.json").read_text())
    return {
        "wall_s": wall,
        "train_runtime_s": train["train_runtime"],
        "eval_accuracy": json.loads((Path(out) / "eval_results.json").read_text())["eval_accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    opts = parser.parse_args()
    figures = {"epochs": opts.epochs}
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = f"{tmp}/features"
        figures["through_backbone"] = probe(f"{tmp}/plain", False, cache_dir, opts.epochs, opts.seed)
        figures["cached_cold"] = probe(f"{tmp}/cold", True, cache_dir, opts.epochs, opts.seed)
        figures["cached_warm"] = probe(f"{tmp}/warm", True, cache_dir, opts.epochs, opts.seed)
    base = figures["through_backbone"]
    for arm in ("cold", "warm"):
        cached = figures[f"cached_{arm}"]
        figures[f"train_speedup_{arm}"] = base["train_runtime_s"] / cached["train_runtime_s"]
        figures[f"wall_speedup_{arm}"] = base["wall_s"] / cached["wall_s"]
    print(f"\n{'arm':18s} {'train s':>8s} {'wall s':>8s} {'val acc':>8s}")
    for name in ("through_backbone", "cached_cold", "cached_warm"):
        f = figures[name]
        print(f"{name:18s} {f['train_runtime_s']:8.1f} {f['wall_s']:8.1f} {f['eval_accuracy']:8.4f}")
    for arm, what in (("cold", "empty cache"), ("warm", "features already cached")):
        print(
            f"cached probe, {what}: training {figures[f'train_speedup_{arm}']:.1f}x faster, whole command "
            f"{figures[f'wall_speedup_{arm}']:.1f}x"
        )
    if opts.json:
        Path(opts.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
