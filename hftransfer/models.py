"""Resolving a pretrained checkpoint (Hub id or local folder) with errors a user can act on."""

from __future__ import annotations

import os
from pathlib import Path

from transformers import AutoConfig, PretrainedConfig


class ModelSourceError(ValueError):
    """A model that cannot be found or fetched; the message says which and why."""


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in {"1", "true", "yes", "on"}


def looks_like_path(name: str) -> bool:
    """True for strings that can only be a filesystem path, never a Hub id (``org/name``)."""
    return (
        name.startswith(("/", "./", "../", "~", "."))
        or name.count("/") > 1
        or os.sep != "/" and os.sep in name
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
    try:
        return AutoConfig.from_pretrained(
            str(local) if local.exists() else name,
            revision=model_args.revision,
            trust_remote_code=model_args.trust_remote_code,
            cache_dir=model_args.cache_dir,
        )
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


def model_path(model_args) -> str:
    """The string to hand to ``from_pretrained``: an expanded local path or the Hub id."""
    local = Path(model_args.model).expanduser()
    return str(local) if local.exists() else model_args.model
