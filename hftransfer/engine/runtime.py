"""Process settings for CPU training, applied in-process when a run starts: the allocator and denormal floats.

glibc returns large freed blocks (a CNN's activations) to the OS and maps them again on the next step; on
CPU training that page-fault churn cost as much as the arithmetic (EfficientNet-Lite0, 2 cores: 39 s vs 21 s
per hymenoptera epoch). Raising the mmap and trim thresholds keeps the memory in the heap for reuse. glibc's
``mallopt`` sets them in the running process (``MALLOC_*_`` variables would need a restart of Python), so
the same settings apply to ``hftransfer train``, ``python -m hftransfer.train``, ``accelerate launch`` and
the Python API alike. Where glibc is absent (macOS, musl) the run simply goes on without them.

The heap keeps what it is given, holes included, so the settings cost memory. Measured on EfficientNet-Lite0
training steps (batch 32, 224 px, 2 cores; seconds per step / peak RSS). In channels_last (the CPU default for
images): glibc's defaults 3.5 s / 3.7 GB, every block in the heap (mmap threshold 2 GiB) 2.3 s / 4.1 GB, blocks
above 64 MiB mapped (``MMAP_THRESHOLD``) 2.0 s / 4.0 GB. In NCHW: defaults 6.2 s / 3.6 GB, 2 GiB 3.1-3.3 s /
4.2-4.4 GB, 64 MiB 3.5 s / 4.0-4.1 GB, 16 MiB 5.5 s / 3.5 GB. Evaluating in larger batches than training needs
blocks the training steps' holes cannot hold: 1.0 GB more after training (``configure_cpu_run`` keeps them equal).

An image batch's activations are most of a CPU run's memory, and on a CPU a smaller batch computes no slower
(there is no accelerator to fill), so image batches above ``CPU_IMAGE_MICRO_BATCH`` run as equal micro-batches
whose gradients are accumulated: the same examples per optimiser step, a smaller working set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

import torch

logger = logging.getLogger("hftransfer")

OPT_OUT = "HFTRANSFER_NO_MALLOC_TUNING"
# mallopt parameter numbers from glibc's malloc.h
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 64 * 2**20  # blocks above it are mapped and unmapped each time (rare: measured above)
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: freed memory stays in the heap for the next step
# One optimiser step over 32 images at 224 px (2 cores, the settings above; seconds / peak RSS), as one batch
# against two micro-batches of 16: EfficientNet-Lite0 1.83 s / 3,848 MiB against 1.80 s / 2,421 MiB, ResNet-50
# 4.57 / 4,774 against 4.24 / 3,184, ViT-S/16 4.25 / 3,253 against 4.17 / 2,524, ConvNeXt-T 5.25 / 5,056
# against 5.57 / 3,532. Four of 8 saved more (EfficientNet-Lite0: 1.61 s / 1,740 MiB), but batch-norm layers
# normalise by each micro-batch's statistics, which grow noisy below 16 examples.
CPU_IMAGE_MICRO_BATCH = 16


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the heap (glibc only); True when the settings took effect.

    ``HFTRANSFER_NO_MALLOC_TUNING=1`` turns it off (to measure the difference, or for memory-tight machines).
    """
    if os.environ.get(OPT_OUT) or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (musl has no mallopt), or no C library found
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def micro_batches(batch: int, largest: int = CPU_IMAGE_MICRO_BATCH) -> int:
    """How many equal micro-batches of at most ``largest`` examples (and at least half as many) make ``batch``;
    1 when the batch is small enough or no such split exists (34 = 2 x 17 = 17 x 2)."""
    if batch <= largest:
        return 1
    parts = next(k for k in range(2, batch + 1) if batch % k == 0 and batch // k <= largest)
    return parts if batch // parts >= largest // 2 else 1


def split_image_batch(args) -> str | None:
    """Runs an image batch above ``CPU_IMAGE_MICRO_BATCH`` as accumulated micro-batches (the module docstring);
    returns the note that says so, or None when the batch stays whole."""
    whole = args.per_device_train_batch_size
    parts = micro_batches(whole)
    if parts == 1:
        return None
    args.per_device_train_batch_size = whole // parts
    args.gradient_accumulation_steps *= parts
    return (
        f"per_device_train_batch_size: {whole // parts}, gradient_accumulation_steps: "
        f"{args.gradient_accumulation_steps} (on a CPU a batch of {whole} images runs as {parts} micro-batches: "
        "the same examples per optimiser step, about 40% less peak memory, no slower; set "
        "gradient_accumulation_steps to keep batches whole)"
    )


def configure_cpu_run(args, eval_batch_chosen: bool = False) -> None:
    """CPU-only settings: allocator thresholds, evaluation batches no larger than training ones (unless the user
    chose, ``eval_batch_chosen``), no denormal floats, no pinned memory."""
    tuned = tune_cpu_allocator()
    if tuned and not eval_batch_chosen and args.per_device_eval_batch_size > args.per_device_train_batch_size:
        args.per_device_eval_batch_size = args.per_device_train_batch_size  # reuses the training steps' memory
    # Denormal floats are very slow on CPUs and carry no useful precision for training.
    torch.set_flush_denormal(True)
    args.dataloader_pin_memory = False  # pinning needs an accelerator; on CPU it only warns
