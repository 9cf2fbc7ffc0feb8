"""Peak resident memory of one child process, for the benchmarks' arms (each runs in its own process), and
when given lines first appeared in its output.

Peak memory is read from the child's ``/proc/PID/status`` (``VmHWM``, the high-water mark of its own address
space), polled until it exits. ``ru_maxrss`` from ``os.wait4`` cannot be used: Linux carries the parent's
high-water mark into a child across fork and exec, so every arm started from a parent that has imported torch
would report at least the parent's memory. Polling misses growth in the last ``POLL_S`` before exit, where a
run only writes files.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

POLL_S = 0.2


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    peak_rss_mib: float | None  # None where /proc is absent (not Linux)
    seconds: float = 0.0
    marks: dict[str, float] = field(default_factory=dict)  # marker -> seconds from start to its first line


def high_water_mib(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    line = next((line for line in status.splitlines() if line.startswith("VmHWM:")), None)
    return int(line.split()[1]) / 1024 if line else None  # kB


def run_measured(
    command: list[str], markers: tuple[str, ...] = (), stop_after: tuple[str, int] | None = None, **popen
) -> Finished:
    """Run ``command`` to the end: its output, its peak resident set size in MiB, and when each of ``markers``
    first appeared in its output (stdout and stderr). ``stop_after=(marker, n)`` ends the process once ``n``
    lines hold ``marker`` (the rest of a run that is not being measured)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    streams, marks, seen = {"stdout": [], "stderr": []}, {}, [0]

    def read(name: str) -> None:
        for line in getattr(process, name):
            streams[name].append(line)
            for marker in markers:
                if marker in line and marker not in marks:
                    marks[marker] = time.perf_counter() - started
            if stop_after and stop_after[0] in line:
                seen[0] += 1
                if seen[0] >= stop_after[1]:
                    process.terminate()

    readers = [threading.Thread(target=read, args=(name,), daemon=True) for name in streams]
    for reader in readers:
        reader.start()
    peak = None
    while process.poll() is None:
        reading = high_water_mib(process.pid)
        peak = reading if reading is not None else peak
        time.sleep(POLL_S)
    seconds = time.perf_counter() - started
    for reader in readers:
        reader.join()
    return Finished(process.returncode, "".join(streams["stdout"]), "".join(streams["stderr"]), peak, seconds, marks)
