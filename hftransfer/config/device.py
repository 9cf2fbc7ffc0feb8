"""Where a run computes and in which precision: one ``--bf16`` / ``--fp16`` switch that works or says why not.

transformers' ``TrainingArguments`` refuses ``bf16`` on a machine without a GPU unless ``use_cpu`` is also
given, accepts ``fp16`` on a CPU (where there is no loss scaling and torch's CPU autocast is slow and
lossy), and reports an old GPU's missing bf16 with a generic message. These checks run on the parsed flags
before ``TrainingArguments`` exists, so every problem is one clear error before any work starts.
"""

from __future__ import annotations

import os

import torch

from hftransfer.errors import HftransferError

PRECISIONS = ("no", "fp16", "bf16")
# Set by `hftransfer train --accelerate_config cpu`: run on the CPU even where a GPU is present.
FORCE_CPU_ENV = "HFTRANSFER_USE_CPU"


class PrecisionError(HftransferError):
    """A mixed precision the hardware cannot run; the message names it and what to use instead."""


def accelerator_available() -> bool:
    """A GPU-like device torch can train on (CUDA, ROCm, XPU, MPS …). Asked when a run is configured, never at
    import."""
    return torch.accelerator.is_available()


def machine_training_defaults(gpu_workers: int) -> dict:
    """DataLoader settings for the machine at hand; ``gpu_workers`` is the task's worker count on an accelerator.

    On a GPU, collating (and decoding images) in worker processes keeps the accelerator fed. On a CPU the
    workers would only take cores from the forward and backward passes (2 cores, one hymenoptera epoch of
    EfficientNet-Lite0: 39 s with no worker, 44 s with one, 43 s with two), so there are none.
    """
    if not accelerator_available():
        return {"dataloader_num_workers": 0, "dataloader_persistent_workers": False}
    return {"dataloader_num_workers": min(gpu_workers, os.cpu_count() or 1), "dataloader_persistent_workers": True}


def requested_precision(fp16: bool, bf16: bool) -> str:
    """The run's precision: the flags, else accelerate's ``mixed_precision`` (set by ``accelerate launch``)."""
    if fp16 and bf16:
        raise PrecisionError("--fp16 and --bf16 are both set; choose one (bf16 where the hardware has it)")
    if fp16 or bf16:
        return "fp16" if fp16 else "bf16"
    from_launcher = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    return from_launcher if from_launcher in PRECISIONS else "no"


def placement_defaults(fp16: bool, bf16: bool, use_cpu: bool | None) -> dict:
    """TrainingArguments defaults for this machine and precision; raises PrecisionError for impossible ones.

    ``use_cpu`` is None when the user did not choose; on a machine with no accelerator it then becomes True,
    which is what lets ``--bf16`` (CPU autocast) and multi-process CPU runs (gloo) work without extra flags.
    """
    precision = requested_precision(fp16, bf16)
    on_cpu = bool(use_cpu) or os.environ.get(FORCE_CPU_ENV) == "1" or not accelerator_available()
    if on_cpu and precision == "fp16":
        raise PrecisionError(
            "fp16 mixed precision needs a GPU (its loss scaling and fast fp16 kernels are GPU "
            "features) and this run is on the CPU; use --bf16 (CPU autocast) or full precision"
        )
    if (
        not on_cpu
        and precision == "bf16"
        and torch.cuda.is_available()
        and not torch.cuda.is_bf16_supported(including_emulation=False)
    ):
        name = torch.cuda.get_device_name()
        major, minor = torch.cuda.get_device_capability()
        raise PrecisionError(
            f"bf16 needs an NVIDIA GPU of compute capability 8.0 (Ampere) or newer; {name} is "
            f"{major}.{minor}. Use --fp16 (with loss scaling) or full precision"
        )
    return {"use_cpu": True} if on_cpu and use_cpu is None else {}
