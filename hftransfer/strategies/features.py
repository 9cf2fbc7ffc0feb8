"""Cached frozen features: run a frozen backbone once, train the head on what it produced.

A linear probe (and the probe phase of ``lp_ft``) spends nearly all its time running a backbone whose output
never changes. When nothing upstream of the head trains and no augmentation is active, the features are
computed once per split, stored on disk and reused: the head then trains for many epochs in seconds.

The cache key covers everything that determines the features: the backbone's weights and buffers (hashed,
so a different checkpoint, key map or head-less re-fine-tune cannot collide), the split's datasets
fingerprint and its on-the-fly transform (the image transform's repr lists size, crop, interpolation, mean
and std), the stat of every image file it lists, and where in the model the features are taken.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from datasets import Dataset
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers.modeling_outputs import SequenceClassifierOutput

from hftransfer.backbones.blocks import head_parameter_names
from hftransfer.data.buckets import token_lengths
from hftransfer.data.labels import LABELS, column_values
from hftransfer.data.streaming import is_streamed
from hftransfer.engine.performance import apply_performance_options
from hftransfer.files.atomic import write_atomically

logger = logging.getLogger("hftransfer")

CACHE_VERSION = "2"  # bump when the stored layout changes (2: the rows computed so far)


class FeatureCacheUnavailable(RuntimeError):
    """The model's head input is not a fixed-size vector per example (then the head trains through the backbone)."""


def default_cache_dir() -> Path:
    home = os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface"
    return Path(os.environ.get("HFTRANSFER_FEATURE_CACHE", Path(home) / "hftransfer" / "features"))


def head_root(model: nn.Module) -> tuple[str, nn.Module]:
    """The smallest module holding exactly the head's parameters (the features are its input)."""
    head = set(head_parameter_names(model))
    best = None
    for name, module in model.named_modules():
        names = {f"{name}.{n}" if name else n for n, _ in module.named_parameters()}
        if names == head and (best is None or len(name) > len(best[0])):
            best = (name, module)
    if best is None:
        raise FeatureCacheUnavailable(f"the head of {type(model).__name__} is spread over several modules")
    return best


def _hash_tensors(tensors: dict[str, torch.Tensor], digest) -> None:
    for key in sorted(tensors):
        tensor = tensors[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str((tensor.dtype, tuple(tensor.shape))).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")


def _files_digest(dataset: Dataset, digest) -> None:
    """Size and mtime of every file a string column lists (a replaced image under the same path invalidates)."""
    for column, feature in dataset.features.items():
        if getattr(feature, "dtype", None) not in {"string", "large_string"}:
            continue
        values = dataset.data.column(column).to_pylist()  # the Arrow table: no format, no transform
        if not values or not isinstance(values[0], str) or not os.path.isfile(values[0]):
            continue
        for path in values:
            stat = os.stat(path)
            digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())


def weights_digest(model: nn.Module) -> str:
    """A hash of every backbone weight and buffer (the head's excluded: it is what trains)."""
    digest = hashlib.sha256()
    head = set(head_parameter_names(model))
    _hash_tensors({k: v for k, v in model.state_dict().items() if k not in head}, digest)
    return digest.hexdigest()


def cache_key(weights: str, point: str, dataset: Dataset, split: str) -> str:
    key = f"v{CACHE_VERSION}:{weights}:{point}:{split}:{dataset._fingerprint}:{len(dataset)}"
    digest = hashlib.sha256(key.encode())
    transform = (dataset.format.get("format_kwargs") or {}).get("transform")
    digest.update(repr(transform).encode())
    _files_digest(dataset, digest)
    return digest.hexdigest()[:32]


@torch.no_grad()
def extract_features(
    model: nn.Module,
    dataset: Dataset,
    collator,
    batch_size: int,
    device: torch.device,
    num_workers: int = 0,
    progress: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, labels) for every example, in order: the input of the head, the backbone in eval mode."""
    point, module = head_root(model)
    captured: list[torch.Tensor] = []

    def grab(_module, args):
        captured.append(args[0].detach().float().cpu())

    handle = module.register_forward_pre_hook(grab)
    was_training = model.training
    model.eval()
    features = labels = None
    done = 0
    order = longest_first(dataset)
    try:
        loader = DataLoader(
            dataset, batch_size=batch_size, sampler=order.tolist(), collate_fn=collator, num_workers=num_workers
        )
        for batch in tqdm(loader, desc=progress, disable=progress is None, leave=False):
            batch_labels = batch.pop("labels").cpu()
            model(**{k: v.to(device) for k, v in batch.items()})
            grabbed = captured.pop()
            if grabbed.dim() != 2:
                raise FeatureCacheUnavailable(
                    f"the head input of {type(model).__name__} ({point}) has shape "
                    f"{tuple(grabbed.shape)}, not one vector per example"
                )
            if features is None:
                # One block for every row, filled in place. Keeping each batch's features as its own tensor left
                # small live blocks between the next batches' freed activations: the heap (kept, not trimmed, for
                # speed: engine/runtime.py) could not reuse those holes and grew by about 0.5 MB per image
                # (EfficientNet-Lite0, 2,700 images: +1.4 GB).
                features = torch.empty((len(dataset), grabbed.shape[1]), dtype=torch.float32)
                labels = torch.empty((len(dataset), *batch_labels.shape[1:]), dtype=batch_labels.dtype)
            rows = order[done : done + len(grabbed)]  # each example's features go to its own row
            features[rows], labels[rows] = grabbed, batch_labels
            done += len(grabbed)
            del grabbed
    finally:
        handle.remove()
        model.train(was_training)
    if features is None:
        raise FeatureCacheUnavailable("the split is empty")
    return features, labels


def longest_first(dataset: Dataset) -> torch.Tensor:
    """The order the backbone sees the examples in: tokenised texts longest first, so each batch pads to lengths
    like its own (TREC, 4,907 questions: the feature pass took 32 s in dataset order); the first batch is the
    largest, so later ones fit in its freed memory. Other data (images) in dataset order."""
    lengths = token_lengths(dataset)
    return torch.arange(len(dataset)) if lengths is None else torch.argsort(lengths, descending=True, stable=True)


def cached_features(
    model, dataset, split, collator, args, cache_dir: str | None, weights: str | None = None, rows=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of ``split`` (of its ``rows`` only, in that order, when given) from the cache, computing and
    storing the missing ones (rank 0 first).

    One file per split holds the rows computed so far: ``auto`` measures a sample of a split, and a probe that
    follows computes only the rows the sample left out (GTSRB, 1,000 images: measuring 600 + 100 of them took
    11.7 s; 19.3 s when the whole splits were read so that a probe could reuse them, before ``full`` was chosen)."""
    if is_streamed(dataset):  # a stream (streaming: true) is read once per pass, not stored
        raise FeatureCacheUnavailable(f"the {split} split is streamed")
    point, _ = head_root(model)
    folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    path = folder / f"{cache_key(weights or weights_digest(model), point, dataset, split)}.safetensors"
    wanted = torch.arange(len(dataset)) if rows is None else torch.as_tensor(rows, dtype=torch.long).reshape(-1)
    with args.main_process_first(desc=f"features of {split}"):
        stored = load_stored(path, len(dataset))
        missing = wanted if stored is None else wanted[stored["computed"][wanted] == 0]
        if len(missing):
            stored = compute_rows(model, dataset, missing, stored, collator, args, split)
            if args.process_index == 0:
                save_stored(stored, path)
                logger.info("%s: features of %d examples cached in %s", split, len(missing), path)
        else:
            logger.info("%s: %d cached features from %s", split, len(wanted), path)
    if rows is None:
        return stored["features"], stored["labels"]
    return stored["features"][wanted], stored["labels"][wanted]


def load_stored(path: Path, size: int) -> dict | None:
    """The cached rows of a split of ``size`` examples, or None."""
    if not path.is_file():
        return None
    stored = load_file(str(path))
    return stored if len(stored.get("computed", ())) == size else None


def compute_rows(model, dataset, missing: torch.Tensor, stored: dict | None, collator, args, split) -> dict:
    """``stored`` with the features of the ``missing`` rows filled in (a new store when None)."""
    subset = dataset if len(missing) == len(dataset) else dataset.select(missing.tolist())
    features, labels = extract_features(
        model,
        subset,
        collator,
        args.per_device_eval_batch_size,
        args.device,
        args.dataloader_num_workers,
        None if args.disable_tqdm else f"features of {split}",
    )
    if subset is dataset:  # every row: the tensors just computed are the store
        return {"features": features, "labels": labels, "computed": torch.ones(len(dataset), dtype=torch.uint8)}
    if stored is None:
        stored = {
            "features": torch.zeros((len(dataset), features.shape[1]), dtype=features.dtype),
            "labels": torch.zeros((len(dataset), *labels.shape[1:]), dtype=labels.dtype),
            "computed": torch.zeros(len(dataset), dtype=torch.uint8),
        }
    stored["features"][missing], stored["labels"][missing], stored["computed"][missing] = features, labels, 1
    return stored


def save_stored(stored: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {key: value.contiguous() for key, value in stored.items()}
    write_atomically(path, lambda partial: save_file(tensors, str(partial)), shared=True)  # never half a file


class HeadOnFeatures(nn.Module):
    """The model's own head (shared parameters) applied to cached features, with the classification loss."""

    def __init__(self, head: nn.Module, problem_type: str | None = None):
        super().__init__()
        self.head = head
        # what Trainer reads of a model's config: with label_smoothing_factor it checks the problem type (and
        # failed on a module without a config: every probe on cached features with label smoothing)
        self.config = SimpleNamespace(problem_type=problem_type)

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        logits = self.head(features)
        loss = None
        if labels is not None:  # multi-hot float targets are multi-label: a sigmoid per label, as the model's own loss
            loss = (
                nn.functional.binary_cross_entropy_with_logits(logits, labels)
                if labels.is_floating_point()
                else nn.functional.cross_entropy(logits, labels)
            )
        return SequenceClassifierOutput(loss=loss, logits=logits)


@dataclass
class FeatureSplits:
    train: Dataset
    validation: Dataset


def feature_datasets(model, datasets, collator, args, cache_dir) -> FeatureSplits:
    """train/validation datasets of cached features (train with its non-augmented transform)."""
    splits, weights = {}, weights_digest(model)
    for split in ("train", "validation"):
        features, labels = cached_features(model, datasets[split], split, collator, args, cache_dir, weights)
        splits[split] = Dataset.from_dict({"features": features.numpy(), "labels": labels.numpy()}).with_format("torch")
    return FeatureSplits(splits["train"], splits["validation"])


def frozen_features(
    model: nn.Module, config, task, processor, data, model_config, sample=None, splits=("train", "validation")
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{split: (features, labels)}`` of the frozen backbone: the one feature pipeline of ``auto``'s measurement and
    ``hftransfer rank`` (the probe strategies read the same cache, ``feature_datasets``).

    The examples are prepared without augmentation, collated in the training's memory format (channels_last on a
    CPU: GTSRB, 1,000 images, 75 s in NCHW) on the training's device, and go through the on-disk cache, so a probe
    strategy chosen next computes only the rows not read here. ``sample(split, labels) -> rows``, when given,
    picks the rows of each split to read. Preparing here leaves ``data.notes`` as it was: the training's own
    preparation says what it did."""
    args = config.training
    notes = list(data.notes)
    datasets = task.prepare_datasets(config, processor, data, model_config, augment=False)
    data.notes[:] = notes
    collator = apply_performance_options(model, task.build_collator(config, processor), task, config.transfer, args)
    model.to(args.device)
    weights = weights_digest(model)
    found = {}
    for split in splits:
        rows = sample(split, column_values(datasets[split], LABELS)) if sample else None
        found[split] = cached_features(
            model, datasets[split], split, collator, args, config.transfer.feature_cache_dir, weights, rows=rows
        )
    return found
