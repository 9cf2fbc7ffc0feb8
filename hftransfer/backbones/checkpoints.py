"""Resolving a pretrained checkpoint (Hub id or local folder) with errors a user can act on, and the rule for
code that a checkpoint ships.

A model folder or Hub repository can name its own Python classes in ``auto_map`` (config.json,
tokenizer_config.json, preprocessor_config.json); loading it then imports and runs that code with the user's
permissions. hftransfer never does so unless the user passes ``trust_remote_code``. The one exception needs
no exception: a folder hftransfer itself wrote with an MLP head is rebuilt from its ``hftransfer_head``
description by hftransfer's own code (``backbones/heads.py``), and the modeling file beside it is never
imported by hftransfer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from transformers import AutoConfig, PretrainedConfig

from hftransfer.backbones.heads import own_head_code_entries
from hftransfer.errors import HftransferError
from hftransfer.files.readers import check_safetensors, json_object, label_names

# The files in which transformers looks for ``auto_map`` (custom classes for the config, model, tokenizer,
# image processor or processor).
CODE_MAP_FILES = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json")


class ModelSourceError(HftransferError):
    """A model that cannot be found or fetched; the message says which and why."""


class RemoteCodeError(ModelSourceError):
    """A model that would run its own Python code, without the user's ``trust_remote_code``."""


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in {"1", "true", "yes", "on"}


def looks_like_path(name: str) -> bool:
    """True for strings that can only be a filesystem path, never a Hub id (``org/name``)."""
    return name.startswith(("/", "./", "../", "~", ".")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def custom_code_entries(folder: str | Path) -> list[str]:
    """``file: class -> code`` for every ``auto_map`` entry in a model folder, hftransfer's own MLP head excepted."""
    root = Path(folder)
    found = []
    for name in CODE_MAP_FILES:
        path = root / name
        if not path.is_file():
            continue
        try:
            settings = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # not this check's business: the loader reports a broken file
        mapping = settings.get("auto_map") if isinstance(settings, dict) else None
        if not isinstance(mapping, dict):
            continue
        ours = own_head_code_entries(root, settings) if name == "config.json" else set()
        found += [f"{name}: {key} -> {value}" for key, value in mapping.items() if key not in ours]
    return found


def check_custom_code(folder: str | Path, trust_remote_code: bool) -> None:
    """Refuse a model folder that names its own code, unless the user trusts it (before anything is loaded)."""
    entries = custom_code_entries(folder)
    if entries and not trust_remote_code:
        raise RemoteCodeError(
            f"{str(folder)!r} ships Python code that loading it would run ({'; '.join(entries[:3])}); hftransfer runs "
            "a model's own code only with --trust_remote_code (trust_remote_code: true), for sources you trust"
        )


def load_model_config(config) -> PretrainedConfig:
    """The checkpoint's config: the cheapest proof that the model exists, loaded before any data work."""
    model_args = config.model
    name = model_args.model
    if not name:
        raise ModelSourceError("no model given: set model to a Hub id (e.g. bert-base-uncased) or a local folder")
    if looks_like_path(name) and not Path(name).expanduser().exists():
        raise ModelSourceError(f"model path does not exist: {name!r}")
    local = Path(name).expanduser()
    if local.exists() and not (local / "config.json").is_file():
        raise ModelSourceError(
            f"{name!r} is not a transformers model folder (no config.json); "
            "expected a folder written by save_pretrained or a Hub id"
        )
    if local.exists():
        check_custom_code(local, model_args.trust_remote_code)
        for weights in sorted(local.glob("*.safetensors")):  # a cut-short download fails here, not after the data
            check_safetensors(weights)
    try:
        return AutoConfig.from_pretrained(
            str(local) if local.exists() else name,
            revision=model_args.revision,
            trust_remote_code=model_args.trust_remote_code,
            cache_dir=model_args.cache_dir,
        )
    except ValueError as err:
        if "trust_remote_code" in str(err):  # a Hub repository with custom code
            raise RemoteCodeError(
                f"{name!r} ships Python code that loading it would run; hftransfer runs a model's "
                "own code only with --trust_remote_code, for sources you trust"
            ) from None
        raise ModelSourceError(f"could not read the model config of {name!r}: {err}") from err
    except OSError as err:
        if local.exists():
            raise ModelSourceError(f"could not read the model config in {name!r}: {err}") from err
        if hub_offline():
            raise ModelSourceError(
                f"cannot fetch Hub model {name!r}: the Hub is unreachable (HF_HUB_OFFLINE=1) and the model is "
                "not in the local cache; pass a local folder (e.g. one written by save_pretrained) instead"
            ) from err
        raise ModelSourceError(
            f"cannot fetch Hub model {name!r}: {err}. Check the id and your network, or pass a local folder"
        ) from err


class RunDirError(HftransferError):
    """A directory that is not a usable model output; the message says what is missing."""


WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def read_model_folder(root: Path, require_weights: bool = True) -> dict:
    """A saved model folder's ``config.json`` (read, nothing loaded or run), its label maps checked and its
    safetensors weights whole; a clear error when ``root`` is not a model folder. ``require_weights=False``
    accepts an ONNX export folder (no PyTorch weights)."""
    if not root.is_dir():
        raise RunDirError(f"model directory not found: {str(root)!r}")
    config_json = root / "config.json"
    if not config_json.is_file():
        raise RunDirError(
            f"{str(root)!r} is not a model directory (no config.json); give the output_dir of "
            "`hftransfer train` or a saved transformers classification model"
        )
    model_config = json_object(config_json, what="model config")
    label_names(model_config, repr(str(config_json)))
    if require_weights and not any((root / name).is_file() for name in WEIGHT_FILES):
        raise RunDirError(f"{str(root)!r} has a config.json but no model weights (model.safetensors)")
    for weights in sorted(root.glob("*.safetensors")):
        check_safetensors(weights)
    return model_config


def model_path(model_args) -> str:
    """The string to hand to ``from_pretrained``: an expanded local path or the Hub id."""
    local = Path(model_args.model).expanduser()
    return str(local) if local.exists() else model_args.model
