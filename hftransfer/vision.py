"""Vision backbones and their preprocessing: timm and transformers through one path.

Every backbone ends up as a transformers ``...ForImageClassification`` model (timm ones as
``TimmWrapperForImageClassification``), so the saved output loads with ``pipeline("image-classification")``.
Preprocessing is a timm data config (input size, interpolation, crop, mean, std) taken from the checkpoint:
timm's ``pretrained_cfg`` for timm models, the image processor's own numbers for transformers models.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import timm
import torch
import yaml
from timm.data import create_transform
from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

from hftransfer.models import ModelSourceError

# PIL resampling ids (transformers' PILImageResampling) → timm interpolation names.
_RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}

AUGMENTATIONS = ("none", "light", "strong")


# --- timm backbones from an architecture name and a local weights file -------------------------------------

def timm_model_config(model_args) -> TimmWrapperConfig:
    """Check a ``timm_arch`` (and its weights file and key map) and return its wrapper config."""
    arch = model_args.timm_arch
    if arch not in timm.list_models():
        close = difflib.get_close_matches(arch, timm.list_models(), n=5)
        raise ModelSourceError(
            f"unknown timm architecture {arch!r}" + (f"; did you mean: {', '.join(close)}" if close else "")
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
    rules = yaml.safe_load(Path(path).expanduser().read_text(encoding="utf-8"))
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
    """A state dict from .safetensors or a torch file (also checkpoints that nest it under state_dict/model)."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    return loaded


def build_timm_classifier(model_args, config: TimmWrapperConfig) -> TimmWrapperForImageClassification:
    """A timm architecture with pretrained weights (local file, or timm's own download) and a new head."""
    model = TimmWrapperForImageClassification(config)
    timm_model = model.timm_model
    if model_args.weights:
        state = rename_keys(read_weights(str(Path(model_args.weights).expanduser())),
                            load_key_map(model_args.weights_key_map))
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
    missing, unexpected = timm_model.load_state_dict(backbone_state, strict=False)
    missing = [k for k in missing if not k.startswith(f"{head}.")]
    if missing or unexpected:
        raise ModelSourceError(
            f"weights {model_args.weights or config.architecture!r} do not match timm {config.architecture!r}: "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}); "
            "a checkpoint saved under another naming needs weights_key_map"
        )
    return model


# --- preprocessing from the checkpoint ---------------------------------------------------------------------

def data_config_for(processor) -> dict[str, Any]:
    """A timm data config (input_size, interpolation, crop_pct, crop_mode, mean, std) for any image processor."""
    if hasattr(processor, "data_config"):  # TimmWrapperImageProcessor: timm's own resolution
        return dict(processor.data_config)
    size = dict(processor.size or {})
    crop = dict(getattr(processor, "crop_size", None) or {})
    do_crop = bool(getattr(processor, "do_center_crop", False)) and crop
    interpolation = _RESAMPLE_NAMES.get(int(getattr(processor, "resample", 2)), "bilinear")
    config = {"interpolation": interpolation, "mean": tuple(processor.image_mean), "std": tuple(processor.image_std)}
    if "shortest_edge" in size:
        edge = size["shortest_edge"]
        crop_pct = getattr(processor, "crop_pct", None)
        if crop_pct and edge < 384:  # ConvNeXt-style: resize to edge / crop_pct, centre-crop edge
            return {**config, "input_size": (3, edge, edge), "crop_pct": crop_pct, "crop_mode": "center"}
        if do_crop:
            height, width = crop["height"], crop["width"]
            return {**config, "input_size": (3, height, width), "crop_pct": height / edge, "crop_mode": "center"}
        if crop_pct:  # ConvNeXt at >= 384: a plain resize to edge × edge
            return {**config, "input_size": (3, edge, edge), "crop_pct": 1.0, "crop_mode": "squash"}
        return {**config, "input_size": (3, edge, edge), "crop_pct": 1.0, "crop_mode": "center"}
    height, width = size["height"], size["width"]
    if do_crop:
        return {**config, "input_size": (3, crop["height"], crop["width"]), "crop_pct": crop["height"] / height,
                "crop_mode": "center"}
    return {**config, "input_size": (3, height, width), "crop_pct": 1.0, "crop_mode": "squash"}  # ViT-style


def build_transforms(data_config: dict[str, Any], augmentation: str, hflip: float):
    """(train, eval) torchvision transforms from the data config; ``augmentation`` picks the training preset.

    none: the eval transform. light: random-resized crop (25-100% of the image) and horizontal flip.
    strong: timm's ImageNet recipe: random-resized crop (8-100%), flip, RandAugment (m9) and random erasing.
    """
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augmentation!r}; valid: {', '.join(AUGMENTATIONS)}")
    base = {k: data_config[k] for k in ("input_size", "interpolation", "mean", "std")}
    eval_transform = create_transform(**base, is_training=False, crop_pct=data_config.get("crop_pct"),
                                      crop_mode=data_config.get("crop_mode"))
    if augmentation == "none":
        return eval_transform, eval_transform
    if augmentation == "light":
        train = create_transform(**base, is_training=True, scale=(0.25, 1.0), hflip=hflip, color_jitter=None)
    else:
        train = create_transform(**base, is_training=True, scale=(0.08, 1.0), hflip=hflip,
                                 auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25)
    return train, eval_transform
