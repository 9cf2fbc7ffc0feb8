"""Quality on real data: the offline MiniLM fine-tuned on SST-2 phrases, judged on the full SST-2 dev set.

Every option is hftransfer's default (learning rate, warmup, batch size, best-checkpoint selection, max_length)
except how much data and time the run gets, so this guards the defaults a user gets.
"""

from __future__ import annotations

import json

import pytest
from conftest import SHARED_DATA, minilm_path
from transformers import pipeline

from hftransfer.train import main

SST2 = SHARED_DATA / "sst2"
TRAIN_PHRASES = 20000  # under four minutes of training on 2 CPU cores (16,000 gave 0.859)
MIN_DEV_ACCURACY = 0.85


@pytest.mark.skipif(not SST2.is_dir(), reason="../shared/data/sst2 not present")
def test_minilm_sst2_reaches_085_dev_accuracy(tmp_path):
    out = tmp_path / "minilm-sst2"
    main(["--model", str(minilm_path()), "--train_file", str(SST2 / "train.tsv"),
          "--validation_file", str(SST2 / "dev.tsv"), "--class_names", "negative", "positive",
          "--max_train_samples", str(TRAIN_PHRASES), "--num_train_epochs", "1", "--output_dir", str(out),
          "--disable_tqdm", "true", "--logging_steps", "100"])
    results = json.loads((out / "all_results.json").read_text())
    report = json.loads((out / "per_class_report.json").read_text())["validation"]
    assert sum(map(sum, report["confusion_matrix"]["matrix"])) == 872  # the full dev set
    assert results["eval_accuracy"] >= MIN_DEV_ACCURACY, results

    classifier = pipeline("text-classification", model=str(out), device="cpu")
    assert classifier("a gripping , beautifully acted and deeply moving film")[0]["label"] == "positive"
    assert classifier("a tedious , clumsy mess with no redeeming qualities")[0]["label"] == "negative"
