"""timm backbones named by architecture, with weights from a local file (renamed by a key map when needed).

They end up as transformers' ``TimmWrapperForImageClassification``, so the saved output loads with
``pipeline("image-classification")`` like every other vision backbone.
"""

from __future__ import annotations

import difflib
import pickle
import re
from pathlib import Path

import timm
import torch
import yaml
from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

from hftransfer.backbones.checkpoints import ModelSourceError


def timm_model_config(model_args) -> TimmWrapperConfig:
    """Check a ``timm_arch`` (and its weights file and key map) and return its wrapper config."""
    arch = model_args.timm_arch
    if arch not in timm.list_models():
        close = difflib.get_close_matches(arch, timm.list_models(), n=5)
        raise ModelSourceError(
            f"unknown timm architecture {arch!r}"
            + (f"; did you mean: {', '.join(close)}" if close else "")
            + " (timm.list_models() lists them all)"
        )
    for option in ("weights", "weights_key_map"):
        path = getattr(model_args, option)
        if path and not Path(path).expanduser().is_file():
            raise ModelSourceError(f"{option} file not found: {path!r}")
    pretrained_cfg = timm.models.get_pretrained_cfg(arch)
    cfg = pretrained_cfg.to_dict() if pretrained_cfg else timm.create_model(arch).pretrained_cfg
    cfg = {k: v for k, v in cfg.items() if k not in {"url", "file", "state_dict", "hf_hub_filename"}}
    return TimmWrapperConfig(architecture=arch, pretrained_cfg=cfg)


def load_key_map(path: str | None) -> list[tuple[str, str]]:
    """An ordered list of ``[regex, replacement]`` pairs (YAML or JSON) applied to every weights key."""
    if not path:
        return []
    try:
        rules = yaml.safe_load(Path(path).expanduser().read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ModelSourceError(
            f"weights_key_map {path!r} is not valid YAML/JSON: {' '.join(str(err).split())}"
        ) from None
    if isinstance(rules, dict):
        rules = rules.get("rules", rules)
    if not isinstance(rules, list) or not all(isinstance(r, (list, tuple)) and len(r) == 2 for r in rules):
        raise ModelSourceError(f"weights_key_map {path!r} must be a list of [pattern, replacement] pairs")
    return [(str(p), str(r)) for p, r in rules]


def rename_keys(state_dict: dict[str, torch.Tensor], rules: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Apply each regex rule in order to every key (a later rule sees the result of the earlier ones)."""
    compiled = [(re.compile(pattern), replacement) for pattern, replacement in rules]
    renamed = {}
    for key, value in state_dict.items():
        for pattern, replacement in compiled:
            key = pattern.sub(replacement, key)
        renamed[key] = value
    return renamed


def read_weights(path: str) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a torch file (also checkpoints that nest it under state_dict/model).

    Torch files are read with ``weights_only=True``: a pickle that would run code to load is refused, never run.
    """
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            loaded = load_file(path)
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ModelSourceError(
            f"weights {path!r} are a pickle that needs code to load (refused: loading it would run "
            f"that code): {' '.join(str(err).split())[:200]}. Save the state dict as "
            ".safetensors or with torch.save(model.state_dict(), ...)"
        ) from None
    except Exception as err:  # torch and safetensors raise several types for a file that is not weights
        raise ModelSourceError(
            f"weights {path!r} are not a weights file torch or safetensors can read "
            f"({type(err).__name__}: {' '.join(str(err).split())[:200]})"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ModelSourceError(f"weights {path!r} hold a {type(loaded).__name__}, not a state dict of tensors")
    return loaded


def build_timm_classifier(model_args, config: TimmWrapperConfig) -> TimmWrapperForImageClassification:
    """A timm architecture with pretrained weights (local file, or timm's own download) and a new head."""
    model = TimmWrapperForImageClassification(config)
    timm_model = model.timm_model
    if model_args.weights:
        state = rename_keys(
            read_weights(str(Path(model_args.weights).expanduser())), load_key_map(model_args.weights_key_map)
        )
    else:  # timm fetches the weights for this architecture from the Hub
        try:
            state = timm.create_model(config.architecture, pretrained=True).state_dict()
        except Exception as err:
            raise ModelSourceError(
                f"could not fetch pretrained weights for timm architecture {config.architecture!r}: {err}. "
                "Offline, pass a local weights file with `weights:`"
            ) from err
    head = timm_model.pretrained_cfg.get("classifier") or "head"
    backbone_state = {k: v for k, v in state.items() if not k.startswith(f"{head}.")}
    expected = timm_model.state_dict()
    mismatched = [
        f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in backbone_state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if mismatched:
        raise ModelSourceError(
            f"weights {model_args.weights!r} do not fit timm {config.architecture!r}: {len(mismatched)} tensor(s) "
            f"of another shape (e.g. {'; '.join(mismatched[:3])}); they are another architecture's weights"
        )
    missing, unexpected = timm_model.load_state_dict(backbone_state, strict=False)
    missing = [k for k in missing if not k.startswith(f"{head}.")]
    if missing or unexpected:
        raise ModelSourceError(
            f"weights {model_args.weights or config.architecture!r} do not match timm {config.architecture!r}: "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}); "
            "a checkpoint saved under another naming needs weights_key_map"
        )
    return model
