"""Writing files whole: to a hidden temporary name beside the target, then one rename.

``os.replace`` is atomic on one filesystem, so a crash or a full disk leaves either the previous file or
the new one, never half of it.
"""

from __future__ import annotations

import os
from pathlib import Path


def partial_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    path, partial = Path(path), partial_path(path)
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path
