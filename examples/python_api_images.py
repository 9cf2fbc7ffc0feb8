"""Images you already hold, notebook style: rank two backbones on them, fine-tune the better one, export it.

Ants vs bees (../shared/data/hymenoptera) read into memory as ``(PIL image, label)`` pairs, the way a notebook
would have them, then handed to hftransfer's API: ``rank`` scores the pip-shipped ImageNet EfficientNet-Lite0
against the same architecture with random weights on frozen features (it should prefer the pretrained one),
``finetune`` trains the better one on the pairs, and ``export`` writes an ONNX model checked against PyTorch.
Run from the repository root (about a minute on 2 CPU cores):

    python examples/python_api_images.py
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import timm
import torch
from offline_models import link_offline_models
from PIL import Image

import hftransfer

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO.parent / "shared" / "data" / "hymenoptera"
PRETRAINED = {  # the pip-shipped weights, renamed to timm's naming on load
    "timm_arch": "tf_efficientnet_lite0",
    "weights": str(REPO / "pretrained" / "efficientnet-lite0.pth"),
    "weights_key_map": str(REPO / "recipes" / "key_maps" / "efficientnet_pytorch_to_timm.yaml"),
}


def read_pairs(folder: Path, limit: int | None = None) -> list[tuple[Image.Image, str]]:
    """(image, label) pairs from class folders, as a notebook holding the photos would have them."""
    pairs = []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(class_dir.glob("*.jpg"))[:limit]
        pairs += [(Image.open(path).convert("RGB"), class_dir.name) for path in files]
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per_class", type=int, default=None, help="images per class and split (default: all)")
    parser.add_argument("--output_dir", default="outputs/python-api-images")
    args = parser.parse_args()
    link_offline_models(REPO / "pretrained")
    train, validation = read_pairs(PHOTOS / "train", args.per_class), read_pairs(PHOTOS / "val", args.per_class)
    print(f"{len(train)} training and {len(validation)} validation images in memory")

    with tempfile.TemporaryDirectory() as tmp:
        random_weights = Path(tmp) / "random-lite0.pth"
        torch.save(timm.create_model("tf_efficientnet_lite0").state_dict(), random_weights)
        other = {"timm_arch": "tf_efficientnet_lite0", "weights": str(random_weights)}
        ranked = hftransfer.rank(
            task="image-classification",
            models=[other],
            train=train,
            validation=validation,
            sample_size=120,
            **PRETRAINED,  # the first candidate; the others are Hub ids, folders or mappings like `other`
        )
    for position, candidate in enumerate(ranked, 1):
        print(
            f"{position}. {candidate.name}: LogME {candidate.scores['logme']:.3f}, "
            f"k-NN accuracy {candidate.scores['knn_accuracy']:.3f} → {candidate.recommended_strategy}"
        )

    result = hftransfer.finetune(
        task="image-classification",
        train=train,
        validation=validation,
        output_dir=args.output_dir,
        overwrite_output_dir=True,
        disable_tqdm=True,
        **PRETRAINED,
    )
    print(
        f"validation accuracy {result.metrics['eval_accuracy']:.3f} ({result.config.transfer.strategy}), "
        f"model in {result.output_dir}"
    )
    print(f"ONNX export: {hftransfer.export(result.output_dir, overwrite=True)}")


if __name__ == "__main__":
    main()
