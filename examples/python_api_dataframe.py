"""Fine-tune a text classifier on a pandas DataFrame you already hold, notebook style (no files written by you).

The SST-2 phrases are read into DataFrames the way a notebook would have them, handed to ``hftransfer.finetune``
with the offline MiniLM, and the result is used in memory: the trained model and its Trainer, a callback that saw
every evaluation, and predictions. Run from the repository root:

    python examples/python_api_dataframe.py                       # 2,000 phrases, about a minute on 2 CPU cores
    python examples/python_api_dataframe.py --train_samples 8000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch
from offline_models import link_offline_models
from transformers import TrainerCallback

import hftransfer

REPO = Path(__file__).resolve().parent.parent
SST2 = REPO.parent / "shared" / "data" / "sst2"


class EvaluationLog(TrainerCallback):
    """Keeps every evaluation's metrics, as a notebook would for a plot."""

    def __init__(self):
        self.history = []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.history.append((state.epoch, metrics.get("eval_accuracy")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train_samples", type=int, default=2000)
    parser.add_argument("--output_dir", default="outputs/python-api-dataframe")
    args = parser.parse_args()
    minilm = link_offline_models(REPO / "pretrained")["all-MiniLM-L6-v2"]  # the pip-shipped MiniLM, a local folder

    names = {0: "negative", 1: "positive"}
    phrases = pd.read_csv(SST2 / "train.tsv", sep="\t").sample(args.train_samples, random_state=0)
    sentences = pd.read_csv(SST2 / "dev.tsv", sep="\t")
    for frame in (phrases, sentences):
        frame["label"] = frame["label"].map(names)
    log = EvaluationLog()
    result = hftransfer.finetune(
        task="text-classification",
        model=str(minilm),
        train=phrases,
        validation=sentences,
        num_train_epochs=2,
        callbacks=[log],
        output_dir=args.output_dir,
        overwrite_output_dir=True,
        disable_tqdm=True,
    )
    print(
        f"validation accuracy {result.metrics['eval_accuracy']:.3f}; by epoch: "
        + ", ".join(f"{epoch:.0f}: {accuracy:.3f}" for epoch, accuracy in log.history)
    )

    tokenizer = result.trainer.processing_class  # the model and its tokenizer, still in memory
    batch = tokenizer(
        ["a gripping , beautifully acted film", "a tedious , clumsy mess"], padding=True, return_tensors="pt"
    ).to(result.model.device)
    with torch.no_grad():
        predicted = result.model(**batch).logits.argmax(-1).tolist()
    print("predictions:", [result.model.config.id2label[i] for i in predicted])


if __name__ == "__main__":
    main()
