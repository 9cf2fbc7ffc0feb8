"""One guarded reader per kind of file a command opens: JSON settings and label maps, YAML settings, lists of text
lines, safetensors weights, torch pickles, ONNX models.

Each reader checks what the file must be before anything is built from it and turns every way it can be broken
(missing, a folder, empty, cut short, binary, the wrong shape, a pickle that runs code) into one
``FileReadError`` naming the file, the flag that named it and what is wrong. The libraries' own errors name
neither the file nor the fix (``SafetensorError: incomplete metadata``, ``InvalidProtobuf``,
``UnicodeDecodeError``), and arrive after the model has loaded: every command reads these files through here.
"""

from __future__ import annotations

import codecs
import json
import os
import pickle
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hftransfer.errors import HftransferError

SAFETENSORS_HEADER_LIMIT = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


class FileReadError(HftransferError):
    """A file that cannot be read as what it must be; the message names the file and what is wrong."""


def _shown(path: Path, flag: str | None) -> str:
    return f"{flag} {str(path)!r}" if flag else repr(str(path))


def regular_file(path: str | os.PathLike, flag: str | None = None, what: str = "file") -> Path:
    """``path`` when it is a regular, readable file; one line saying what it is otherwise (missing, a folder, a
    device such as /dev/null, a pipe)."""
    path = Path(path).expanduser()
    shown = _shown(path, flag)
    try:
        os.stat(path)
    except FileNotFoundError:
        pass
    except OSError as err:  # a name too long, a link loop, a path through a file
        raise FileReadError(f"{shown}: {err.strerror or err}") from None
    if not path.exists():
        broken = " (a symbolic link to a missing file)" if path.is_symlink() else ""
        raise FileReadError(f"{shown}: {what} not found{broken}")
    if path.is_dir():
        raise FileReadError(f"{shown} is a folder; give a {what}")
    if not path.is_file():
        raise FileReadError(f"{shown} is not a regular file (a device, a pipe or a socket); give a {what}")
    if not os.access(path, os.R_OK):
        raise FileReadError(f"{shown}: no permission to read it")
    return path


def utf8_text(path: str | os.PathLike, flag: str | None = None, what: str = "text file") -> str:
    """The whole text of a UTF-8 file; a binary file (NUL bytes) or another encoding is refused with its line."""
    path = regular_file(path, flag, what)
    data = path.read_bytes()
    if b"\x00" in data[: 1 << 20]:
        raise FileReadError(f"{_shown(path, flag)} is a binary file, not a {what}")
    try:
        return codecs.decode(data, "utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise FileReadError(
            f"{_shown(path, flag)} is not UTF-8 text (bad byte at line {line}); re-save it as UTF-8"
        ) from None


def text_lines(path: str | os.PathLike, flag: str | None = None, what: str = "text file") -> list[str]:
    """The non-blank lines of a UTF-8 text file (an empty file is refused: it would be a silent no-op)."""
    lines = [line for line in utf8_text(path, flag, what).splitlines() if line.strip()]
    if not lines:
        raise FileReadError(f"{_shown(Path(path).expanduser(), flag)} is empty: it holds no line of text")
    return lines


def json_object(path: str | os.PathLike, flag: str | None = None, what: str = "JSON file") -> dict[str, Any]:
    """A JSON file whose top level is an object (settings, a model's config.json)."""
    path = Path(path).expanduser()
    try:
        value = json.loads(utf8_text(path, flag, what))
    except json.JSONDecodeError as err:
        raise FileReadError(f"{_shown(path, flag)} is not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(value, dict):
        raise FileReadError(f"{_shown(path, flag)} holds a JSON {type(value).__name__}, not an object of settings")
    return value


def yaml_mapping(path: str | os.PathLike, flag: str | None = None, what: str = "YAML file") -> dict[str, Any]:
    """A YAML file whose top level is a mapping, read with the safe loader (tags that build objects are refused)."""
    import yaml

    path = Path(path).expanduser()
    try:
        value = yaml.safe_load(utf8_text(path, flag, what))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or " ".join(str(err).split())[:160]
        raise FileReadError(f"{_shown(path, flag)} is not valid YAML{where}: {problem}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FileReadError(
            f"{_shown(path, flag)} holds a YAML {type(value).__name__}, not a mapping of settings (key: value lines)"
        )
    return value


def label_names(model_config: dict[str, Any], source: str) -> list[str]:
    """The class names of a saved classifier's config, in id order, after checking that its label maps agree.

    ``id2label`` must map the ids 0..N-1 to N distinct non-empty names, and ``label2id`` (when present) must be
    its exact inverse: two ids under one name would make every prediction of one class a tie between them. timm
    wrappers keep ``label_names`` (a list) instead; it is held to the same rule."""
    listed = model_config.get("label_names")
    if listed is not None:
        if not isinstance(listed, list):
            raise FileReadError(f"{source}: label_names must be a list of class names, got {listed!r:.80}")
        return _distinct_names(listed, source, "label_names")
    id2label = model_config.get("id2label")
    if id2label is None:
        return []
    if not isinstance(id2label, dict):
        raise FileReadError(
            f'{source}: id2label must map ids to class names ({{"0": "cat", …}}), got a '
            f"{type(id2label).__name__}: {id2label!r:.80}"
        )
    try:
        ids = {int(key): value for key, value in id2label.items()}
    except (TypeError, ValueError):
        bad = next(k for k in id2label if not str(k).strip().lstrip("-").isdigit())
        raise FileReadError(f"{source}: id2label has the key {bad!r}, which is not a class id (0, 1, …)") from None
    if sorted(ids) != list(range(len(ids))):
        raise FileReadError(f"{source}: id2label's ids must be 0..{len(ids) - 1}, got {sorted(ids)}")
    names = _distinct_names([ids[i] for i in range(len(ids))], source, "id2label")
    label2id = model_config.get("label2id")
    if label2id is not None and (
        not isinstance(label2id, dict)
        or {str(k): _as_id(v) for k, v in label2id.items()} != {n: i for i, n in enumerate(names)}
    ):
        raise FileReadError(
            f"{source}: label2id {label2id!r:.120} is not the inverse of id2label {id2label!r:.120}; "
            "the two maps must name the same classes with the same ids"
        )
    return names


def _as_id(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _distinct_names(names: list[Any], source: str, key: str) -> list[str]:
    bad = [name for name in names if not isinstance(name, str) or not name.strip()]
    if bad:
        raise FileReadError(f"{source}: {key} holds {bad[0]!r}, which is not a class name (a non-empty string)")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise FileReadError(
            f"{source}: {key} gives the name {', '.join(map(repr, twice))} to more than one class id ({names}); "
            "each class needs its own name"
        )
    return list(names)


def check_safetensors(path: str | os.PathLike) -> None:
    """A safetensors file whose header parses and whose tensors lie inside the file (an empty, truncated or
    foreign file is refused before any loader maps it)."""
    path = Path(path)
    size = path.stat().st_size
    tensors, header_end = _safetensors_header(path, size)
    if tensors is None:
        raise FileReadError(
            f"{str(path)!r} is not a safetensors file ({size} bytes, no valid header): it is empty, cut short or "
            "another format; save or copy the model again"
        )
    offsets = [t.get("data_offsets", [0, 0]) for k, t in tensors.items() if k != "__metadata__" and isinstance(t, dict)]
    needed = header_end + max((int(end) for _, end in offsets), default=0)
    if needed > size:
        raise FileReadError(
            f"{str(path)!r} is cut short: its header describes {needed} bytes, the file has {size}; save or copy "
            "the model again"
        )


def _safetensors_header(path: Path, size: int) -> tuple[dict | None, int]:
    """(the header's tensor table, where the data begins); (None, 0) when the file has no valid header."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        if not 0 < length <= min(size - 8, SAFETENSORS_HEADER_LIMIT):
            return None, 0
        header = handle.read(length)
    try:
        tensors = json.loads(header.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, 0
    return (tensors, 8 + length) if isinstance(tensors, dict) else (None, 0)


@contextmanager
def refusing_code_in_pickles(source: str | os.PathLike):
    """Weights and checkpoints are read with ``torch.load(weights_only=True)``, which refuses a pickle that would
    run code: that refusal is a user error (one line naming the file), not a traceback whose message suggests
    turning the protection off."""
    try:
        yield
    except pickle.UnpicklingError as err:
        # torch's message names what the pickle calls ("GLOBAL posix.system"), then advises weights_only=False
        called = next((line.strip() for line in str(err).splitlines() if "GLOBAL" in line), "")
        raise FileReadError(
            f"{str(source)!r}: a pickle that needs code to load, refused (loading it would run that code"
            f"{': ' + called[:160] if called else ''}); save weights as safetensors"
        ) from None


def onnx_session(path: str | os.PathLike, providers: list[str] | None = None):
    """An ONNX Runtime session of ``path``; a file that is not a whole ONNX model is refused in one line."""
    import onnxruntime as ort

    path = regular_file(path, what="ONNX model")
    try:
        return ort.InferenceSession(str(path), providers=providers or ort.get_available_providers())
    except Exception as err:  # onnxruntime raises its own classes (InvalidProtobuf, Fail, NoSuchFile …)
        raise FileReadError(
            f"{str(path)!r} is not a usable ONNX model ({type(err).__name__}: {' '.join(str(err).split())[:160]}); "
            "export it again with `hftransfer export`"
        ) from None


def torch_file(path: str | os.PathLike, allowed=None):
    """``torch.load(path, weights_only=True)`` (memory-mapped), inside ``allowed`` (a context of extra safe globals,
    such as transformers' numpy allow-list for RNG states): a pickle that would run code, or a file cut short, is
    refused in one line naming it."""
    from contextlib import nullcontext

    import torch

    path = regular_file(path, what="torch file")
    with refusing_code_in_pickles(path), allowed or nullcontext():
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except (RuntimeError, EOFError, ValueError, OSError) as err:
            if isinstance(err, pickle.UnpicklingError):
                raise
            raise FileReadError(
                f"{str(path)!r} is not a whole torch file ({' '.join(str(err).split())[:160]}); it is cut short or "
                "another format"
            ) from None
