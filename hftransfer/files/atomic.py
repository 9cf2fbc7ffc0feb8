"""Writing files whole: to a hidden temporary name beside the target, then one rename.

``os.replace`` is atomic on one filesystem, so a crash or a full disk leaves either the previous file or
the new one, never half of it.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Callable


def partial_path(path: str | os.PathLike, shared: bool = False) -> Path:
    """The hidden name a file is written under before its rename; ``shared``: one per process, for files that
    several processes may write at once (caches)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.partial" if shared else f".{path.name}.partial")


def write_atomically(path: str | os.PathLike, write: Callable[[Path], object], shared: bool = False) -> Path:
    """``write(partial)`` writes the file under its partial name, which is then renamed to ``path``; whatever
    happens, no partial file is left behind. Every file hftransfer writes whole goes through here."""
    path = Path(path)
    partial = partial_path(path, shared)
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    return write_atomically(path, lambda partial: partial.write_text(text, encoding="utf-8"))


# Files that make up a saved model's weights; a new model that no longer has one (sharded → single file,
# .bin → .safetensors) must not leave the previous model's behind for from_pretrained to pick up.
WEIGHT_PATTERNS = (
    "model*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model.bin.index.json",
    "adapter_model.*",
    "adapter_config.json",
)


def staging_dir(target: str | os.PathLike) -> Path:
    """Where a model is written before it replaces the one in ``target``: a hidden folder inside it (same
    filesystem, so the moves that publish it are renames)."""
    return Path(target) / ".model.partial"


def publish_directory(
    staging: str | os.PathLike, target: str | os.PathLike, replaceable: set[str] | frozenset[str] = frozenset()
) -> list[Path]:
    """Move every file of ``staging`` into ``target`` by rename, weights last, then remove ``staging``.

    Everything slow (serialising, writing gigabytes) happened in ``staging``: a crash or an exception there
    leaves ``target``'s previous model untouched. What remains is a handful of renames, each atomic; the
    weights go last so a model's new weights never sit beside a config from before. Weight files of the previous
    model that the new one does not replace are removed only when named in ``replaceable`` (what the previous
    model's publication recorded, ``files/written.py``): a file of the user's is never removed for its name.
    """
    staging, target = Path(staging), Path(target)
    files = sorted((p for p in staging.rglob("*") if p.is_file()), key=lambda p: (_is_weights(p), str(p)))
    foreign = sorted(
        name
        for name in {p.relative_to(staging).parts[0] for p in files}
        if (target / name).exists() and name not in replaceable
    )
    if foreign:  # the last line of defence: the commands' output checks refuse such a folder before any work
        raise FileExistsError(
            errno.EEXIST,
            f"{', '.join(foreign)} in {str(target)!r} were not written by hftransfer and are not replaced; the new "
            f"files are kept in {str(staging)!r}",
        )
    published = []
    for path in files:
        destination = target / path.relative_to(staging)
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, destination)
        published.append(destination)
    for pattern in WEIGHT_PATTERNS:  # only now: until the new weights are in place, the old ones are the model
        for stale in set(target.glob(pattern)) - set(published):
            if stale.name in replaceable:
                stale.unlink()
    shutil.rmtree(staging, ignore_errors=True)
    return published


def _is_weights(path: Path) -> bool:
    return any(path.match(pattern) for pattern in WEIGHT_PATTERNS)
