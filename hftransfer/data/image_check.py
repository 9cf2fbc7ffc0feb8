"""Every listed image file decoded once before training, in parallel, and remembered by path, size and mtime.

A file that fails mid-epoch costs the epoch; decoding all of them first costs a pass over the data (50,000
small JPEGs: most of a minute on 2 cores). The pass runs in threads (PIL releases the GIL while decoding) and
its good results are kept in a cache, one JSON file per data folder: a second run on the same files (a new
learning rate, a resumed run) only stats them, and a changed or added file (another size or mtime) is
decoded again. Bad files are never cached, so they are reported on every run until fixed.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from hftransfer.files.atomic import write_atomically

CACHE_ENV = "HFTRANSFER_IMAGE_CHECK_CACHE"


def cache_root() -> Path:
    home = os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface"
    return Path(os.environ.get(CACHE_ENV, Path(home) / "hftransfer" / "verified_images"))


def find_unreadable(paths: list[str], workers: int | None = None) -> list[tuple[str, str]]:
    """(path, reason) for every file PIL cannot fully decode; files verified before and unchanged are skipped."""
    stamps = {path: _stamp(path) for path in paths}
    cache_file = _cache_file(paths)
    verified = _load(cache_file)
    unchecked = [path for path in dict.fromkeys(paths) if stamps[path] is None or verified.get(path) != stamps[path]]
    if not unchecked:
        return []
    with ThreadPoolExecutor(max_workers=workers) as pool:  # None: the standard library's own count for I/O work
        problems = dict(zip(unchecked, pool.map(_decode_problem, unchecked)))
    good = {path: stamps[path] for path, problem in problems.items() if problem is None}
    if good:
        _save(cache_file, {**verified, **good})
    return [(path, problems[path]) for path in paths if problems.get(path)]


def _stamp(path: str) -> list[int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def _cache_file(paths: list[str]) -> Path:
    """One cache per data folder (the paths' common folder), so unrelated data sets do not share a file."""
    try:
        common = os.path.commonpath([os.path.abspath(p) for p in paths]) if paths else ""
    except ValueError:  # paths on different drives (Windows)
        common = ""
    return cache_root() / (hashlib.sha1(common.encode()).hexdigest()[:16] + ".json")


def _load(cache_file: Path) -> dict[str, list[int]]:
    try:
        return json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or unreadable: check everything again
        return {}


def _save(cache_file: Path, verified: dict[str, list[int]]) -> None:
    """Written beside and renamed into place, so processes reading it never see half a file; a cache that cannot
    be written (read-only home) only means the next run checks again."""
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(verified)
        write_atomically(cache_file, lambda partial: partial.write_text(text, encoding="utf-8"), shared=True)
    except OSError:
        pass


def _decode_problem(path: str) -> str | None:
    try:
        with Image.open(path) as image:
            image.draft("RGB", (64, 64))  # JPEG: decode at reduced scale; still reads every byte
            image.load()
    except FileNotFoundError:
        return "file not found"
    except Exception as err:  # PIL raises many types for bad files (UnidentifiedImageError, OSError, ...)
        return f"{type(err).__name__}: {err}"
    return None
