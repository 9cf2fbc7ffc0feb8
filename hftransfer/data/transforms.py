"""Image transforms from the checkpoint: a timm data config (input size, interpolation, crop, mean, std) read
from timm's ``pretrained_cfg`` or a transformers image processor, turned into torchvision transforms by timm.
Nothing is hard-coded: the eval transform is the checkpoint's own; training adds an augmentation preset.
"""

from __future__ import annotations

from typing import Any

from timm.data import create_transform

from hftransfer.errors import HftransferError

# PIL resampling ids (transformers' PILImageResampling) → timm interpolation names.
_RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}

AUGMENTATIONS = ("none", "light", "strong")


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
        return {
            **config,
            "input_size": (3, crop["height"], crop["width"]),
            "crop_pct": crop["height"] / height,
            "crop_mode": "center",
        }
    return {**config, "input_size": (3, height, width), "crop_pct": 1.0, "crop_mode": "squash"}  # ViT-style


def build_transforms(data_config: dict[str, Any], augmentation: str, hflip: float):
    """(train, eval) torchvision transforms from the data config; ``augmentation`` picks the training preset.

    none: the eval transform. light: random-resized crop (25-100% of the image) and horizontal flip.
    strong: timm's ImageNet recipe: random-resized crop (8-100%), flip, RandAugment (m9) and random erasing.
    """
    if augmentation not in AUGMENTATIONS:
        raise HftransferError(f"unknown augmentation {augmentation!r}; valid: {', '.join(AUGMENTATIONS)}")
    base = {k: data_config[k] for k in ("input_size", "interpolation", "mean", "std")}
    eval_transform = create_transform(
        **base, is_training=False, crop_pct=data_config.get("crop_pct"), crop_mode=data_config.get("crop_mode")
    )
    if augmentation == "none":
        return eval_transform, eval_transform
    if augmentation == "light":
        train = create_transform(**base, is_training=True, scale=(0.25, 1.0), hflip=hflip, color_jitter=None)
    else:
        train = create_transform(
            **base, is_training=True, scale=(0.08, 1.0), hflip=hflip, auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25
        )
    return train, eval_transform
