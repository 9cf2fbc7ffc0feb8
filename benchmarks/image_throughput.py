"""Image training throughput on hymenoptera: hftransfer vs. a plain Trainer, plus where the CPU time goes.

The baseline is what transformers' ``run_image_classification.py`` does: a Trainer over an image folder with
per-sample torchvision transforms (RandomResizedCrop + flip for training, Resize + CenterCrop for eval) and
default DataLoader settings, started as a plain ``python`` process. hftransfer runs its shipped recipe through
``hftransfer train``, once as shipped and once with its CPU allocator tuning turned off
(``HFTRANSFER_NO_MALLOC_TUNING=1``), which shows what the in-process ``mallopt`` settings are worth. Same model
(offline ImageNet EfficientNet-Lite0), epochs, batch size, learning rate and seed; each arm in its own
process, one after the other; each arm's peak resident memory (RSS) is that process's (``benchmarks/process_stats.py``).
hftransfer computes each batch of 32 as two micro-batches of 16 on a CPU (its default, ``engine/runtime.py``):
the same examples per optimiser step. The time breakdown is per image of such a micro-batch.

    python examples/offline_models.py && python benchmarks/image_throughput.py [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from process_stats import Finished, run_measured

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "hymenoptera"
RECIPE = REPO / "recipes" / "image_classification" / "efficientnet_lite0_hymenoptera.yaml"


def baseline(out: str, epochs: float, batch_size: int, lr: float, seed: int) -> dict:
    """run_image_classification.py's approach, with the same backbone as the recipe."""
    import torch
    from PIL import Image
    from torchvision import transforms as T
    from transformers import Trainer, TrainingArguments, set_seed

    from hftransfer.data.images import scan_class_folders
    from hftransfer.data.labels import LabelledData
    from hftransfer.evaluation.metrics import compute_classification_metrics
    from hftransfer.evaluation.report import reduce_logits
    from hftransfer.tasks.image_classification import TASK
    from hftransfer.training.parse import parse_config

    set_seed(seed)
    config = parse_config(["--config", str(RECIPE), "--output_dir", out])
    train_ds, val_ds = scan_class_folders(DATA / "train"), scan_class_folders(DATA / "val")
    names = sorted(set(train_ds["label"]))
    model_config = TASK.load_model_config(config)

    labelled = LabelledData(splits={}, label_names=names)
    model = TASK.build_model(config, labelled, model_config)
    mean, std = model_config.pretrained_cfg["mean"], model_config.pretrained_cfg["std"]
    normalize = T.Normalize(mean=mean, std=std)
    train_tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), normalize])
    eval_tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), normalize])

    def with_tf(transform):
        def apply(batch):
            return {
                "pixel_values": [transform(Image.open(p).convert("RGB")) for p in batch["image"]],
                "labels": [names.index(label) for label in batch["label"]],
            }

        return apply

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
        remove_unused_columns=False,
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_ds.with_transform(with_tf(train_tf)),
        eval_dataset=val_ds.with_transform(with_tf(eval_tf)),
        data_collator=lambda rows: {
            "pixel_values": torch.stack([r["pixel_values"] for r in rows]),
            "labels": torch.tensor([r["labels"] for r in rows]),
        },
        compute_metrics=compute_classification_metrics,
        preprocess_logits_for_metrics=reduce_logits,
    )
    train = trainer.train().metrics
    return {
        "train_samples_per_second": train["train_samples_per_second"],
        "train_runtime_s": train["train_runtime"],
        "eval_accuracy": trainer.evaluate()["eval_accuracy"],
    }


def hftransfer(out: str, epochs: float, batch_size: int, lr: float, seed: int, env: dict | None = None) -> dict:
    done = checked(
        run_measured(
            [
                str(Path(sys.executable).parent / "hftransfer"),
                "train",
                str(RECIPE),
                "--output_dir",
                out,
                "--num_train_epochs",
                str(epochs),
                "--per_device_train_batch_size",
                str(batch_size),
                "--learning_rate",
                str(lr),
                "--seed",
                str(seed),
                "--disable_tqdm",
                "true",
                "--strategy",
                "full",
                "--head_learning_rate",
                str(lr),
            ],  # the baseline's recipe
            cwd=REPO,
            env={**os.environ, **(env or {})},
        )
    )
    train = json.loads((Path(out) / "train_results.json").read_text())
    return {
        "train_samples_per_second": train["train_samples_per_second"],
        "train_runtime_s": train["train_runtime"],
        "eval_accuracy": json.loads((Path(out) / "eval_results.json").read_text())["eval_accuracy"],
        "peak_rss_mib": done.peak_rss_mib,
    }


def checked(done: Finished) -> Finished:
    if done.returncode != 0:
        raise SystemExit(f"an arm failed:\n{done.stderr[-3000:]}")
    return done


def time_breakdown(tuned: bool, samples: int = 64) -> dict:
    """Milliseconds per training image for decode, resize+augment, forward and backward (this process), in
    micro-batches of the size hftransfer computes on a CPU."""
    import torch
    from PIL import Image

    from hftransfer.backbones.timm_weights import (
        build_timm_classifier,
        timm_model_config,
    )
    from hftransfer.data.images import scan_class_folders, to_mode
    from hftransfer.data.transforms import build_transforms
    from hftransfer.engine.runtime import CPU_IMAGE_MICRO_BATCH, tune_cpu_allocator

    if tuned and not tune_cpu_allocator():
        raise SystemExit("the CPU allocator settings need glibc")

    class ModelArgs:
        timm_arch, weights = "tf_efficientnet_lite0", str(REPO / "pretrained" / "efficientnet-lite0.pth")
        weights_key_map = str(REPO / "recipes" / "key_maps" / "efficientnet_pytorch_to_timm.yaml")

    config = timm_model_config(ModelArgs)
    config.num_labels = 2
    model = build_timm_classifier(ModelArgs, config)
    data_config = {**config.pretrained_cfg, "input_size": tuple(config.pretrained_cfg["input_size"])}
    train_tf, _ = build_transforms(data_config, "light", 0.5)
    paths = list(scan_class_folders(DATA / "train")["image"])[:samples]
    start = time.perf_counter()
    decoded = [to_mode(Image.open(p)).copy() for p in paths]
    decode = time.perf_counter() - start
    start = time.perf_counter()
    tensors = [train_tf(image) for image in decoded]
    transform = time.perf_counter() - start
    batch_size = CPU_IMAGE_MICRO_BATCH
    x, y = torch.stack(tensors[:batch_size]), torch.zeros(batch_size, dtype=torch.long)
    forward = backward = 0.0
    for step in range(3):
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(pixel_values=x).logits, y)
        middle = time.perf_counter()
        loss.backward()
        end = time.perf_counter()
        if step:  # the first step warms up
            forward, backward = forward + middle - start, backward + end - middle
    return {
        "decode_ms": 1000 * decode / samples,
        "resize_augment_ms": 1000 * transform / samples,
        "forward_ms": 1000 * forward / 2 / batch_size,
        "backward_ms": 1000 * backward / 2 / batch_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--arm", choices=["baseline", "breakdown", "breakdown-tuned"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    common = (opts.epochs, opts.batch_size, opts.lr, opts.seed)
    if opts.arm == "baseline":
        print(json.dumps(baseline(opts.out, *common)))
        return
    if opts.arm in ("breakdown", "breakdown-tuned"):
        print(json.dumps(time_breakdown(tuned=opts.arm == "breakdown-tuned")))
        return

    def child(*args: str, env=None) -> dict:
        done = checked(run_measured([sys.executable, __file__, *args], env={**os.environ, **(env or {})}))
        return {**json.loads(done.stdout.strip().splitlines()[-1]), "peak_rss_mib": done.peak_rss_mib}

    figures = {"epochs": opts.epochs, "batch_size": opts.batch_size}
    with tempfile.TemporaryDirectory() as tmp:
        figures["baseline"] = child(
            "--arm",
            "baseline",
            "--out",
            f"{tmp}/baseline",
            "--epochs",
            str(opts.epochs),
            "--batch-size",
            str(opts.batch_size),
            "--lr",
            str(opts.lr),
        )
        figures["hftransfer"] = hftransfer(f"{tmp}/hftransfer", *common)
        figures["hftransfer_plain_malloc"] = hftransfer(
            f"{tmp}/plain", *common, env={"HFTRANSFER_NO_MALLOC_TUNING": "1"}
        )
    figures["breakdown_plain_malloc"] = child("--arm", "breakdown")
    figures["breakdown_tuned_malloc"] = child("--arm", "breakdown-tuned")
    ratio = figures["hftransfer"]["train_samples_per_second"] / figures["baseline"]["train_samples_per_second"]
    figures["throughput_ratio"] = ratio
    figures["allocator_ratio"] = (
        figures["hftransfer"]["train_samples_per_second"]
        / figures["hftransfer_plain_malloc"]["train_samples_per_second"]
    )
    print(f"\n{'run':24s} {'images/s':>9s} {'train s':>8s} {'val acc':>8s} {'peak RSS MiB':>13s}")
    for name in ("baseline", "hftransfer", "hftransfer_plain_malloc"):
        f = figures[name]
        print(
            f"{name:24s} {f['train_samples_per_second']:9.2f} {f['train_runtime_s']:8.1f} {f['eval_accuracy']:8.4f} "
            f"{f['peak_rss_mib']:13.0f}"
        )
    print(f"throughput ratio (hftransfer / baseline): {ratio:.2f}x")
    print(f"allocator tuning (hftransfer / hftransfer_plain_malloc): {figures['allocator_ratio']:.2f}x")
    for name in ("breakdown_plain_malloc", "breakdown_tuned_malloc"):
        print(name + ": " + ", ".join(f"{k} {v:.1f}" for k, v in figures[name].items()) + " (ms per image)")
    if opts.json:
        Path(opts.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
