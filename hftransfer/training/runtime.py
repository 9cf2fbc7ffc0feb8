"""Process settings for CPU training, applied in-process when a run starts: the allocator and denormal floats.

glibc returns large freed blocks (a CNN's activations) to the OS and maps them again on the next step; on
CPU training that page-fault churn cost as much as the arithmetic (EfficientNet-Lite0, 2 cores: 39 s vs 21 s
per hymenoptera epoch). Raising the mmap and trim thresholds keeps the memory in the heap for reuse. glibc's
``mallopt`` sets them in the running process (``MALLOC_*_`` variables would need a restart of Python), so
the same settings apply to ``hftransfer train``, ``python -m hftransfer.train``, ``accelerate launch`` and
the Python API alike. Where glibc is absent (macOS, musl) the run simply goes on without them.
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
# mallopt takes an int: 2 GiB - 1, above any single activation tensor of the models trained on CPUs.
THRESHOLD = 2**31 - 1


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
    return bool(mallopt(_M_MMAP_THRESHOLD, THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, THRESHOLD))


def configure_cpu_run(args) -> None:
    """CPU-only settings: allocator thresholds, no denormal floats, no pinned memory."""
    tune_cpu_allocator()
    # Denormal floats are very slow on CPUs and carry no useful precision for training.
    torch.set_flush_denormal(True)
    args.dataloader_pin_memory = False  # pinning needs an accelerator; on CPU it only warns
