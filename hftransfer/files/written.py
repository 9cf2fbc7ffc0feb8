"""What hftransfer wrote into a folder it shares with the user: the record that decides what it may remove.

A folder a run writes into (``output_dir``) may also hold the user's own files, and names alone do not tell them
apart: a user's ``probe/`` or ``checkpoint-2024-notes/`` looks like a run's. So every entry hftransfer creates at
the top of the folder (checkpoints, working folders, the published model's files) is named in
``.hftransfer_written.json`` before or as it is written, and a later run removes only entries named there.
The record is hidden, so it is never uploaded with the model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hftransfer.files.atomic import write_text_atomically

WRITTEN_RECORD = ".hftransfer_written.json"
WORKING_DIR_PREFIX = ".hftransfer-work-"  # a step's scratch folder inside the output folder (a probe's Trainer)


def recorded_entries(folder: str | os.PathLike) -> set[str]:
    """The names of the entries of ``folder`` that hftransfer recorded writing (empty when it recorded none)."""
    try:
        names = json.loads((Path(folder) / WRITTEN_RECORD).read_text(encoding="utf-8")).get("written", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {name for name in names if isinstance(name, str) and name and "/" not in name and name not in {".", ".."}}


def record_entries(folder: str | os.PathLike, *paths: str | os.PathLike) -> None:
    """Add ``paths`` (entries of ``folder``, or paths inside them: their top-level entry is recorded)."""
    folder = Path(folder)
    names = {
        Path(path).name if len(Path(path).parts) == 1 else Path(path).resolve().relative_to(folder.resolve()).parts[0]
        for path in paths
    }
    before = recorded_entries(folder)
    if names <= before:
        return
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomically(folder / WRITTEN_RECORD, json.dumps({"written": sorted(before | names)}, indent=1))


def forget_entries(folder: str | os.PathLike, *names: str) -> None:
    """Remove ``names`` from the record (after the entries themselves were removed)."""
    before = recorded_entries(folder)
    if before & set(names):
        write_text_atomically(
            Path(folder) / WRITTEN_RECORD, json.dumps({"written": sorted(before - set(names))}, indent=1)
        )


def working_dir(folder: str | os.PathLike, purpose: str) -> Path:
    """A step's scratch folder inside ``folder`` (the same path on every process of a run); record it on the main
    process before the step writes there, and remove it when the step ends."""
    return Path(folder) / f"{WORKING_DIR_PREFIX}{purpose}"
