"""GPU training figures: samples/s, peak GPU memory and model FLOPs utilisation, hftransfer against a plain
transformers-script Trainer, in fp32, bf16 and bf16 + torch_compile.

Workloads (synthetic data written to a temporary folder, so the figures need no download):

- ``minilm``: the offline all-MiniLM-L6-v2 (22.7 M parameters), short texts of 8 to 64 words;
- ``bert-base``: a BERT-base-sized encoder built from ``BertConfig()`` (110 M), the same texts;
- ``efficientnet-lite0``: the offline ImageNet EfficientNet-Lite0 (timm), 224 px photos;
- ``vit-b16``: a ViT-B/16-sized model built from ``ViTConfig()`` (86 M), 224 px.

Arms, each in its own process (a fresh CUDA context, allocator and compile cache):

- ``transformers``: what ``run_classification.py`` / ``run_image_classification.py`` do: a ``Trainer`` with its
  defaults (fp32, no DataLoader workers), dynamic padding for texts (their best setting, not the pad-to-128
  default), per-sample torchvision transforms for images;
- ``fp32``, ``bf16``, ``bf16_compile``: ``hftransfer train`` with ``--strategy full`` and no flag but the
  precision (and ``--torch_compile``), so its own defaults (workers, pinned memory, padding) are measured.

samples/s counts the steps after the first ``--warmup_steps`` (CUDA synchronised), so start-up and compilation
are left out. FLOPs per sample come from ``torch.utils.flop_counter`` on one forward and backward pass of the
model (texts at their mean length); utilisation divides the achieved FLOP/s by the GPU's dense peak for the arm's
precision (table below; unknown GPUs get the FLOP/s only).

    python examples/offline_models.py && python benchmarks/gpu.py [--workloads minilm vit-b16] [--json out.json]
    python benchmarks/gpu.py --dry   # seconds on a CPU: tiny models, 3 steps, fp32 arms (tests/test_benchmarks.py)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import TrainerCallback

REPO = Path(__file__).resolve().parent.parent
HFTRANSFER = str(Path(sys.executable).parent / "hftransfer")
TEXT_WORKLOADS, IMAGE_WORKLOADS = ("minilm", "bert-base"), ("efficientnet-lite0", "vit-b16")
ARMS = ("transformers", "fp32", "bf16", "bf16_compile")
ARM_FLAGS = {"fp32": [], "bf16": ["--bf16", "true"], "bf16_compile": ["--bf16", "true", "--torch_compile", "true"]}
# Dense peak TFLOP/s (fp32 without tensor cores, bf16 tensor cores), from NVIDIA's data sheets; first match wins.
PEAK_TFLOPS = {
    "H100 PCIe": (51.2, 756.0),
    "H100": (66.9, 989.4),
    "H200": (66.9, 989.4),
    "GH200": (66.9, 989.4),
    "A100": (19.5, 312.0),
    "L40S": (91.6, 362.1),
    "L4": (30.3, 121.0),
    "A10": (31.2, 125.0),
}
TEXT_MODEL = REPO / "pretrained" / "all-MiniLM-L6-v2"
IMAGE_FLAGS = [
    "--task",
    "image-classification",
    "--timm_arch",
    "tf_efficientnet_lite0",
    "--weights",
    str(REPO / "pretrained" / "efficientnet-lite0.pth"),
    "--weights_key_map",
    str(REPO / "recipes" / "key_maps" / "efficientnet_pytorch_to_timm.yaml"),
]


def write_texts(path: Path, rows: int, seed: int = 0) -> Path:
    """A CSV of ``rows`` texts of 8 to 64 words from the tokenizer's vocabulary, two labels."""
    from transformers import AutoTokenizer

    words = [w for w in AutoTokenizer.from_pretrained(TEXT_MODEL).get_vocab() if w.isalpha() and len(w) > 2]
    rng = random.Random(seed)
    lines = ["text,label"] + [
        " ".join(rng.choices(words, k=rng.randint(8, 64))) + f",{'ab'[i % 2]}" for i in range(rows)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_images(root: Path, count: int, size: int, seed: int = 0) -> Path:
    """``count`` JPEG photos of random noise in two class folders."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(count):
        target = root / "ab"[i % 2] / f"{i}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(target, quality=90)
    return root


def model_flags(workload: str, tmp: Path, dry: bool) -> list[str]:
    """hftransfer's flags for the workload's backbone (a folder saved from a config where it has no weights)."""
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
        ViTConfig,
        ViTForImageClassification,
        ViTImageProcessor,
    )

    if workload == "minilm":
        return ["--model", str(TEXT_MODEL)]
    if workload == "efficientnet-lite0":
        return IMAGE_FLAGS
    import torch

    torch.manual_seed(0)  # the same random weights for every arm
    folder = tmp / workload
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64) if dry else {}
    if workload == "bert-base":
        BertForSequenceClassification(BertConfig(**small)).save_pretrained(folder)
        AutoTokenizer.from_pretrained(TEXT_MODEL).save_pretrained(folder)
    else:
        pixels = {"image_size": 32, "patch_size": 8} if dry else {}
        ViTForImageClassification(ViTConfig(**small, **pixels)).save_pretrained(folder)
        side = pixels.get("image_size", 224)
        ViTImageProcessor(size={"height": side, "width": side}).save_pretrained(folder)
    return ["--model", str(folder), *(["--task", "image-classification"] if workload in IMAGE_WORKLOADS else [])]


def peak_flops(device: str, precision: str) -> float | None:
    for name, (fp32, bf16) in PEAK_TFLOPS.items():
        if name in device:
            return 1e12 * (bf16 if precision.startswith("bf16") else fp32)
    return None


class SteadyThroughput(TrainerCallback):
    """samples/s over the steps after ``warmup`` (CUDA synchronised at both ends)."""

    def __init__(self, warmup: int, batch_size: int):
        self.warmup, self.batch_size, self.started, self.figures = warmup, batch_size, None, {}

    @staticmethod
    def now() -> float:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.started = self.now()
        elif self.started is not None and state.global_step == state.max_steps:
            seconds = self.now() - self.started
            self.figures = {
                "samples_per_second": (state.global_step - self.warmup) * self.batch_size / seconds,
                "timed_steps": state.global_step - self.warmup,
            }


def plain_trainer(workload: str, flags: list[str], data: Path, out: Path, steps: int, batch: int):
    """The transformers example scripts' Trainer: defaults, the model built by hftransfer (the same weights)."""
    import torch
    from torchvision import transforms as T
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from hftransfer.backbones.checkpoints import load_model_config
    from hftransfer.data.labels import LABELS
    from hftransfer.tasks import get_task
    from hftransfer.training.parse import parse_config

    text = workload in TEXT_WORKLOADS
    config = parse_config(
        [*flags, *(["--train_file", str(data)] if text else ["--data_dir", str(data)]), "--output_dir", str(out)]
    )
    task = get_task(config.model.task)
    labelled, model_config = task.load_data(config), (task.load_model_config or load_model_config)(config)
    model = task.build_model(config, labelled, model_config)
    processor = task.build_preprocessing(config, labelled, model_config)
    train = labelled.splits["train"]
    if text:  # run_classification.py with dynamic padding (its fastest setting)
        train = train.map(
            lambda b: processor(b["text"], truncation=True, max_length=128),
            batched=True,
            remove_columns=[c for c in train.column_names if c != LABELS],
        )
        collator = DataCollatorWithPadding(processor)
    else:  # run_image_classification.py: per-sample transforms, stacked by the default collator
        from PIL import Image

        size = (
            model_config.pretrained_cfg["input_size"][-1]
            if hasattr(model_config, "pretrained_cfg")
            else processor.size["height"]
        )
        transform = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor()])
        train = train.with_transform(
            lambda b: {"pixel_values": [transform(Image.open(p).convert("RGB")) for p in b["image"]], LABELS: b[LABELS]}
        )
        collator = None
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=batch,
        max_steps=steps,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=text,
        use_cpu=not torch.cuda.is_available(),
    )
    return Trainer(model=model, args=args, train_dataset=train, data_collator=collator)


def hftransfer_run(workload: str, arm: str, flags: list[str], data: Path, out: Path, steps: int, batch: int):
    """``hftransfer train`` in this process: full fine-tuning, the arm's precision, everything else its defaults."""
    from hftransfer.training.parse import parse_config
    from hftransfer.training.recipe import run

    source = ["--train_file", str(data)] if workload in TEXT_WORKLOADS else ["--data_dir", str(data)]
    run(
        parse_config(
            [
                *flags,
                *source,
                "--output_dir",
                str(out),
                "--strategy",
                "full",
                "--max_steps",
                str(steps),
                "--per_device_train_batch_size",
                str(batch),
                "--save_strategy",
                "no",
                "--eval_strategy",
                "no",
                "--load_best_model_at_end",
                "false",
                "--calibrate",
                "false",
                "--disable_tqdm",
                "true",
                *ARM_FLAGS[arm],
            ]
        )
    )


def flops_per_sample(trainer) -> float:
    """Forward and backward FLOPs of one training batch of the trainer's model, per sample."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    batch = next(iter(trainer.get_train_dataloader()))
    counter = FlopCounterMode(display=False)
    with counter:
        trainer.model(**batch).loss.backward()
    trainer.model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(next(v for v in batch.values() if isinstance(v, torch.Tensor)))


def measure_arm(workload: str, arm: str, data: Path, out: Path, steps: int, warmup: int, batch: int, dry: bool) -> dict:
    """One arm in this process: steady samples/s, peak GPU memory, and (transformers arm) FLOPs per sample."""
    import torch
    import transformers.trainer

    meter = SteadyThroughput(warmup, batch)
    # hftransfer builds its Trainer inside `run`; transformers adds DEFAULT_CALLBACKS to every Trainer, which
    # times both arms the same way without a benchmark hook in hftransfer.
    transformers.trainer.DEFAULT_CALLBACKS.append(meter)
    flags = model_flags(workload, out.parent, dry)
    figures = {}
    if arm == "transformers":
        trainer = plain_trainer(workload, flags, data, out, steps, batch)
        trainer.train()
    else:
        hftransfer_run(workload, arm, flags, data, out, steps, batch)
    figures["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    if arm == "transformers":
        figures["flops_per_sample"] = flops_per_sample(trainer)
    return {**meter.figures, **figures}


def settings(dry: bool, workload: str) -> dict:
    """Steps, warm-up steps, batch size and data size for a workload (tiny and few in a dry run)."""
    if dry:
        return {"steps": 3, "warmup": 1, "batch": 4, "rows": 32, "image_size": 32}
    text = workload in TEXT_WORKLOADS
    return {"steps": 150, "warmup": 30, "batch": 32 if text else 64, "rows": 4096 if text else 512, "image_size": 256}


def run_workload(workload: str, arms: list[str], tmp: Path, dry: bool) -> dict:
    """Every arm of one workload, each in its own process; utilisation from the transformers arm's FLOPs."""
    import torch

    plan = settings(dry, workload)
    if workload in TEXT_WORKLOADS:
        data = write_texts(tmp / f"{workload}.csv", plan["rows"])
    else:
        data = write_images(tmp / f"{workload}-images", plan["rows"], plan["image_size"])
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    results = {}
    for arm in arms:
        command = [
            sys.executable,
            __file__,
            "--child",
            workload,
            arm,
            str(data),
            str(tmp / workload / arm),
            *(["--dry"] if dry else []),
        ]
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            results[arm] = {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
            continue
        results[arm] = json.loads(done.stdout.strip().splitlines()[-1])
    flops = results.get("transformers", {}).get("flops_per_sample")
    for arm, figures in results.items():
        if flops and "samples_per_second" in figures:
            achieved = flops * figures["samples_per_second"]
            peak = peak_flops(device, arm)
            figures["tflops"] = achieved / 1e12
            figures["mfu"] = achieved / peak if peak else None
    return {"device": device, **plan, "arms": results}


def print_table(results: dict) -> None:
    print(
        f"\n{'workload':20s} {'arm':14s} {'samples/s':>10s} {'vs plain':>8s} {'peak GiB':>9s} {'TFLOP/s':>8s} "
        f"{'MFU':>6s}"
    )
    for workload, run in results.items():
        plain = run["arms"].get("transformers", {}).get("samples_per_second")
        for arm, f in run["arms"].items():
            if "error" in f:
                print(f"{workload:20s} {arm:14s} error: {f['error'][:90]}")
                continue
            ratio = f"{f['samples_per_second'] / plain:.2f}x" if plain else "-"
            memory = f"{f['peak_gpu_memory_gib']:.2f}" if f.get("peak_gpu_memory_gib") is not None else "-"
            mfu = f"{100 * f['mfu']:.1f}%" if f.get("mfu") is not None else "-"
            print(
                f"{workload:20s} {arm:14s} {f['samples_per_second']:10.1f} {ratio:>8s} {memory:>9s} "
                f"{f.get('tflops', 0):8.3g} {mfu:>6s}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", choices=[*TEXT_WORKLOADS, *IMAGE_WORKLOADS])
    parser.add_argument("--arms", nargs="+", choices=ARMS)
    parser.add_argument("--dry", action="store_true", help="tiny models, 3 steps, fp32: proves the wiring on a CPU")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--child", nargs=4, metavar=("WORKLOAD", "ARM", "DATA", "OUT"), help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        workload, arm, data, out = opts.child
        plan = settings(opts.dry, workload)
        print(
            json.dumps(
                measure_arm(
                    workload, arm, Path(data), Path(out), plan["steps"], plan["warmup"], plan["batch"], opts.dry
                )
            )
        )
        return
    workloads = opts.workloads or (["bert-base", "vit-b16"] if opts.dry else [*TEXT_WORKLOADS, *IMAGE_WORKLOADS])
    arms = opts.arms or (["transformers", "fp32"] if opts.dry else list(ARMS))
    with tempfile.TemporaryDirectory() as tmp:
        results = {workload: run_workload(workload, arms, Path(tmp), opts.dry) for workload in workloads}
    print_table(results)
    if opts.json:
        Path(opts.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
