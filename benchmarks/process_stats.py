"""Peak resident memory of one child process, for the benchmarks' arms (each runs in its own process).

Read from the child's ``/proc/PID/status`` (``VmHWM``, the high-water mark of its own address space), polled
until it exits. ``ru_maxrss`` from ``os.wait4`` cannot be used: Linux carries the parent's high-water mark into
a child across fork and exec, so every arm started from a parent that has imported torch would report at least
the parent's memory. Polling misses growth in the last ``POLL_S`` before exit, where a run only writes files.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

POLL_S = 0.2


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    peak_rss_mib: float | None  # None where /proc is absent (not Linux)


def high_water_mib(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    line = next((line for line in status.splitlines() if line.startswith("VmHWM:")), None)
    return int(line.split()[1]) / 1024 if line else None  # kB


def run_measured(command: list[str], **popen) -> Finished:
    """Run ``command`` to the end; its output and its peak resident set size in MiB."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, **popen)
        peak = None
        while process.poll() is None:
            reading = high_water_mib(process.pid)
            peak = reading if reading is not None else peak
            time.sleep(POLL_S)
        out.seek(0), err.seek(0)
        return Finished(process.returncode, out.read(), err.read(), peak)
