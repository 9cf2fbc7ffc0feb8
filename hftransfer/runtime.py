"""Process-level settings that must exist before Python starts, applied by re-executing the entry point once."""

from __future__ import annotations

import os
import sys

# glibc returns large freed blocks (a CNN's activations) to the OS and maps them again on the next step;
# on CPU training that page-fault churn cost as much as the arithmetic (EfficientNet-Lite0, 2 cores: 39 s
# vs 21 s per hymenoptera epoch). Higher thresholds keep the memory in the heap for reuse. glibc reads
# these variables only at start-up, hence the re-exec.
MALLOC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": str(4 << 30), "MALLOC_TRIM_THRESHOLD_": str(4 << 30)}
OPT_OUT = "HFTRANSFER_NO_MALLOC_TUNING"


def reexec_with_tuned_malloc(module: str, argv: list[str]) -> None:
    """Replace this process by ``python -m module argv`` with the malloc settings, once, on Linux/glibc.

    Does nothing when the settings (or the opt-out variable) are already in the environment, off Linux, or
    when exec is impossible; then the run simply goes on without them.
    """
    if sys.platform != "linux" or os.environ.get(OPT_OUT) or all(k in os.environ for k in MALLOC_SETTINGS):
        return
    env = {**os.environ, **MALLOC_SETTINGS}
    env.setdefault(OPT_OUT, "")  # present (even empty) after the re-exec; the check above uses the malloc keys
    try:
        os.execve(sys.executable, [sys.executable, "-m", module, *argv], env)
    except OSError:
        return
