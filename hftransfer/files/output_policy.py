"""Where a command may write: every output path checked once, before any work, by the same rules for every command.

A command names what it will write (a folder and the entries it puts there, or one file) and what it reads; the
check refuses, in one line naming the flag and the path:

- a path that cannot be a destination: a symbolic link that loops or points nowhere, a name longer than the file
  system allows, a file where a folder is needed (or the reverse), a place the user cannot write;
- an output that is, contains or lies inside one of the command's own inputs (a student written over its teacher,
  a run written into the photo folder it trains on, predictions written over the texts they classify); a run's
  reports may live inside the run (``eval/``, ``onnx/``) when the input says so;
- a folder holding a file of the user's under a name the command writes: only entries that hftransfer recorded
  writing there (``files/written.py``) are ever replaced, whatever overwrite flag is given.

Whether an earlier output of hftransfer's own may be replaced (``--overwrite``) stays each command's rule.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from hftransfer.errors import HftransferError
from hftransfer.files.written import recorded_entries

NAME_MAX, PATH_MAX = 255, 4096  # POSIX file systems' limits when the system does not say


class OutputPathError(HftransferError):
    """An output path a command cannot or must not write; the message names the flag, the path and why."""


@dataclass(frozen=True)
class Input:
    """A path the command reads; ``outputs_inside``: the command keeps its outputs in a sub-folder of it (a run's
    ``eval/`` reports and ``onnx/`` export), so only the input itself and what contains it are refused. ``file``:
    True for an input that must be a file, False for a folder; an input of the other kind is left to the command,
    which refuses it with its own message."""

    name: str
    path: str | os.PathLike | None
    outputs_inside: bool = False
    file: bool | None = None


@dataclass(frozen=True)
class Output:
    """A destination: a folder receiving the entries ``writes`` names (glob patterns), or one file."""

    flag: str
    path: str | os.PathLike
    folder: bool = True
    writes: tuple[str, ...] = ()


def check_output(
    output: Output, inputs: Iterable[Input] = (), ours: Callable[[Path], set[str]] = recorded_entries
) -> Path:
    """The output's path (``~`` expanded) once every rule above holds; ``ours(folder)``: the entries of the folder
    that hftransfer wrote (default: those its record names), asked only once the path is known to be usable."""
    if not str(output.path).strip():
        raise OutputPathError(f"{output.flag} is empty; name a {'folder' if output.folder else 'file'}")
    path = Path(output.path).expanduser()
    shown = f"{output.flag} {str(path)!r}"
    _check_lengths(Path(os.path.abspath(path)), shown, output.writes)  # first: a name too long fails every stat
    resolved = _resolved(path, shown)
    _check_kind(resolved, shown, output.folder)
    _check_writable(resolved if output.folder else resolved.parent, shown)
    for given in inputs:
        _check_apart(resolved, shown, given)
    if output.folder and resolved.is_dir():
        _check_no_user_file_replaced(resolved, shown, output.writes, ours(resolved))
    return path


def _resolved(path: Path, shown: str) -> Path:
    """The real path; a symbolic link loop, a dangling link, or a file standing where a folder of the path should be
    is refused."""
    try:
        os.stat(path)
    except FileNotFoundError:
        if path.is_symlink():
            raise OutputPathError(
                f"{shown} is a symbolic link to {os.readlink(path)!r}, which does not exist; remove the link or "
                "choose another path"
            ) from None
    except NotADirectoryError:
        raise OutputPathError(f"{shown}: cannot write into it: a part of this path is a file, not a folder") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise OutputPathError(f"{shown} is a symbolic link loop; remove the link or choose another path") from None
        if err.errno != errno.ENAMETOOLONG:
            raise OutputPathError(f"{shown} cannot be used: {err.strerror or err}") from None
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # a loop further up the path (Python 3.11 raises RuntimeError)
        raise OutputPathError(f"{shown} passes through a symbolic link loop; choose another path") from None


def _existing_ancestor(path: Path) -> Path:
    existing = path
    while existing != existing.parent:
        try:
            if existing.exists():
                return existing
        except OSError:  # a name too long (the checks say so), a loop
            pass
        existing = existing.parent
    return existing


def _limits(folder: Path) -> tuple[int, int]:
    try:
        return os.pathconf(folder, "PC_NAME_MAX"), os.pathconf(folder, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):
        return NAME_MAX, PATH_MAX


def _check_lengths(path: Path, shown: str, writes: tuple[str, ...]) -> None:
    name_max, path_max = _limits(_existing_ancestor(path))
    too_long = [part for part in path.parts if len(os.fsencode(part)) > name_max]
    if too_long:
        raise OutputPathError(
            f"{shown}: the name {too_long[0][:40]!r}… is {len(os.fsencode(too_long[0]))} bytes, over this file "
            f"system's limit of {name_max}; choose a shorter name"
        )
    inside = max((len(os.fsencode(p)) for p in writes if not any(c in p for c in "*?[")), default=0)
    if len(os.fsencode(str(path))) + 1 + inside > path_max:
        raise OutputPathError(
            f"{shown}: the path is over this system's limit of {path_max} bytes; choose a shorter one"
        )


def _check_kind(resolved: Path, shown: str, folder: bool) -> None:
    if folder and resolved.exists() and not resolved.is_dir():
        raise OutputPathError(f"{shown} exists and is not a folder; name a folder")
    if not folder and resolved.is_dir():
        raise OutputPathError(f"{shown} is a folder; name a file (it is written inside no folder it is not given)")
    if not folder and resolved.exists() and not resolved.is_file():
        raise OutputPathError(f"{shown} is not a regular file (a device, a pipe or a socket); name a file")


def _check_writable(resolved: Path, shown: str) -> None:
    existing = _existing_ancestor(resolved)
    if not existing.is_dir():
        raise OutputPathError(f"{shown}: {str(existing)!r} is a file, so no folder can be made there")
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as err:
        raise OutputPathError(f"{shown}: cannot write into {str(existing)!r}: {err.strerror or err}") from None


def _check_apart(resolved: Path, shown: str, given: Input) -> None:
    if given.path is None or not str(given.path):
        return
    source = Path(given.path).expanduser()
    if not source.exists() or (given.file is not None and source.is_file() != given.file):
        return  # a Hub id, or an input the command refuses itself
    source = source.resolve()
    where = None
    if resolved == source:
        where = "is the same path as"
    elif source in resolved.parents and not given.outputs_inside:
        where = "is inside"
    elif resolved in source.parents:
        where = "contains"
    if where:
        raise OutputPathError(
            f"{shown} {where} {given.name} {str(source)!r}, which this command reads: writing there could replace "
            "or mix with what it reads; choose an output elsewhere"
        )


def _check_no_user_file_replaced(folder: Path, shown: str, writes: tuple[str, ...], ours: set[str]) -> None:
    clashes = sorted(
        entry.name
        for entry in folder.iterdir()
        if entry.name not in ours and any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in writes)
    )
    if clashes:
        listed = ", ".join(clashes[:5]) + (" …" if len(clashes) > 5 else "")
        raise OutputPathError(
            f"{shown} holds {listed}, which hftransfer did not write and this command would replace; move "
            f"{'them' if len(clashes) > 1 else 'it'} elsewhere or choose another folder (no overwrite flag replaces "
            "files hftransfer did not write)"
        )
