"""Rank two backbones, fine-tune the better one and export it, from Python with hftransfer's API.

Ants vs bees (../shared/data/hymenoptera) with the pip-shipped ImageNet EfficientNet-Lite0 against the same
architecture with random weights: the ranking on frozen features should prefer the pretrained one, which is
then fine-tuned with the shipped recipe and exported to ONNX (checked against PyTorch). Run from the
repository root (about three minutes on 2 CPU cores):

    python examples/python_api_images.py
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import timm
import torch
from offline_models import link_offline_models

import hftransfer

REPO = Path(__file__).resolve().parent.parent
RECIPE = "image_classification/efficientnet_lite0_hymenoptera"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--output_dir", default="outputs/python-api-images")
    args = parser.parse_args()
    link_offline_models(REPO / "pretrained")

    with tempfile.TemporaryDirectory() as tmp:
        random_weights = Path(tmp) / "random-lite0.pth"
        torch.save(timm.create_model("tf_efficientnet_lite0").state_dict(), random_weights)
        # the recipe's own backbone is the first candidate; others are Hub ids, folders or mappings like this one
        other = {"timm_arch": "tf_efficientnet_lite0", "weights": str(random_weights)}
        ranked = hftransfer.rank(RECIPE, models=[other], sample_size=120)
    for position, candidate in enumerate(ranked, 1):
        print(
            f"{position}. {candidate.name}: LogME {candidate.scores['logme']:.3f}, "
            f"k-NN accuracy {candidate.scores['knn_accuracy']:.3f} → {candidate.recommended_strategy}"
        )

    result = hftransfer.finetune(
        RECIPE, num_train_epochs=args.epochs, output_dir=args.output_dir, overwrite_output_dir=True, disable_tqdm=True
    )
    print(f"validation accuracy {result.metrics['eval_accuracy']:.3f}, model in {result.output_dir}")
    print(f"ONNX export: {hftransfer.export(result.output_dir, overwrite=True)}")


if __name__ == "__main__":
    main()
