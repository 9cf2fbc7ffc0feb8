"""Image classification with timm and transformers vision backbones.

Data: an image folder (``root/<class>/*``, optionally under ``train/ val/ test/``), CSV/JSON files listing
image paths and labels, or a Hub dataset with an image column. Images are decoded and transformed on the
fly (``with_transform``) in DataLoader workers, with transforms built from the checkpoint's data config.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    TimmWrapperConfig,
    TimmWrapperImageProcessor,
)

from hftransfer.backbones.checkpoints import ModelSourceError, model_path
from hftransfer.backbones.checkpoints import load_model_config as load_transformers_config
from hftransfer.backbones.heads import without_head_code
from hftransfer.backbones.timm_weights import build_timm_classifier, timm_model_config
from hftransfer.config.limits import Range, check_fields, option
from hftransfer.data import image_check, images, labels, multilabel, source_ids, streaming, tables
from hftransfer.data.labels import LABELS
from hftransfer.data.tables import DataError
from hftransfer.data.transforms import AUGMENTATIONS, build_transforms, data_config_for
from hftransfer.evaluation.metrics import compute_classification_metrics
from hftransfer.strategies import get_strategy
from hftransfer.tasks.base import Task, TaskWords
from hftransfer.tasks.image_inputs import (
    PredictionEncoder,
    describe_examples,
    holds_paths,
    read_prediction_inputs,
    sample_payloads,
)

IMAGE_COLUMNS = ("image", "img", "image_path", "path", "file", "filename", "file_name")


@dataclass
class ImageClassificationArguments:
    """Options of the image-classification task."""

    image_column: str | None = field(
        default=None, metadata={"help": "Column with images or image paths; default: image, img, path, file …"}
    )
    augmentation: str = field(
        default="auto",
        metadata={
            "choices": ("auto", *AUGMENTATIONS),
            "help": "Training augmentation: none, light (random-resized crop of 25 to 100 percent, flip), strong "
            "(timm's RandAugment recipe + random erasing) or auto: light, but none for strategy "
            "linear_probe (a probe on fixed features; they are then computed once and cached).",
        },
    )
    hflip: float = field(
        default=0.5,
        metadata=option("Horizontal-flip probability in training (0 for digits, text, …).", range=Range(0, 1)),
    )
    skip_corrupt_images: bool = field(
        default=False, metadata={"help": "Skip unreadable image files (counted in the summary) instead of failing."}
    )

    def __post_init__(self) -> None:
        check_fields(self)


def load_model_config(config):
    """timm_arch (+ local weights) or a transformers/timm checkpoint (Hub id or folder); never both."""
    model_args = config.model
    if model_args.timm_arch and model_args.model:
        raise ModelSourceError(f"give either model ({model_args.model!r}) or timm_arch ({model_args.timm_arch!r})")
    if model_args.timm_arch:
        return timm_model_config(model_args)
    if model_args.weights:
        raise ModelSourceError("weights goes with timm_arch (a timm architecture name), not with model")
    if model_args.model and model_args.model.startswith("hf-hub:"):  # timm's spelling of a Hub id
        model_args.model = model_args.model.removeprefix("hf-hub:")
    return load_transformers_config(config)


def resolve_image_column(options, columns: list[str]) -> str:
    if options.image_column:
        return options.image_column
    for name in IMAGE_COLUMNS:
        if name in columns:
            return name
    raise DataError(
        f"no image column given and none of {', '.join(IMAGE_COLUMNS)} found; set "
        f"image_column to one of: {', '.join(columns)}"
    )


def load_data(config, model_labels: list[str] | None = None) -> labels.LabelledData:
    """Read the splits, check every image file, fix the label map and carve validation if needed.

    With ``model_labels`` (evaluating a trained model) the labels take the model's ids and the splits are
    returned as found: no validation carved, no subsets.
    """
    data_args, options = config.data, config.task
    notes: list[str] = []
    stream = None
    if data_args.data_dir:
        _check_folder_options(config, model_labels)
        splits = images.load_image_folder(data_args.data_dir, require_train=model_labels is None, notes=notes)
        column = "image"
        paths = {split: source_ids.relative_paths(ds["image"], data_args.data_dir) for split, ds in splits.items()}
        splits = source_ids.identify(splits, data_args, notes, paths)
    else:
        splits, stream, column = _read_tables(config, model_labels, notes)
    tables.check_not_empty(splits)
    notes += _check_images(splits, column, options.skip_corrupt_images)
    if data_args.data_dir:  # folders give one label per image: the folder's name
        labelled = (
            labels.encode_labels_for_model(splits, "label", model_labels)
            if model_labels
            else labels.encode_labels(splits, "label", data_args.class_names, data_args.allow_case_variant_labels)
        )
    else:
        labelled = multilabel.encode(splits, data_args, model_labels or None)
    labelled.columns = {"image": column}
    labelled.notes.extend(notes)
    if stream is not None:  # streamed images are decoded when read: an unreadable one stops the run, naming it
        return streaming.finish(labelled, stream, data_args, config.training.seed)
    return labelled if model_labels else labels.finish_splits(labelled, data_args, config.training.seed)


def _check_folder_options(config, model_labels: list[str] | None) -> None:
    data_args = config.data
    if data_args.train_file or data_args.dataset or config.inputs:
        raise DataError("give one data source: data_dir, train_file or dataset")
    if data_args.streaming and not model_labels:
        raise DataError(
            "streaming reads a listing (train_file) or a Hub dataset; a data_dir folder is already "
            "read an image at a time: remove streaming: true"
        )
    if data_args.multi_label or data_args.label_separator or data_args.label_columns:
        raise DataError(
            "data_dir's class folders give one label per image; for several labels per image give a "
            "listing (train_file: CSV/JSON of image paths and label lists)"
        )


def _read_tables(config, model_labels: list[str] | None, notes: list[str]):
    """(splits, the training stream or None, the image column) of listings, tables, a Hub dataset or memory; the
    paths of a listing resolved against its own folder, after its ids were taken from them as written."""
    data_args = config.data
    stream = None
    if data_args.streaming and not model_labels:
        splits, stream = streaming.open_splits(data_args, config.inputs)
    else:
        splits = tables.load_splits(data_args, config.inputs)
    first = next(iter(splits.values()))
    column = resolve_image_column(config.task, first.column_names)
    for label_column in multilabel.label_source_columns(data_args):
        check_distinct_columns(column, label_column)
    tables.require_columns(splits, [column, *multilabel.label_source_columns(data_args)])
    if stream is None:
        written = {s: labels.column_values(ds, column) for s, ds in splits.items() if holds_paths(ds, column)}
        splits = source_ids.identify(splits, data_args, notes, written)
    if data_args.train_file:  # listings hold paths relative to the listing file
        listings = {"train": data_args.train_file, "validation": data_args.validation_file, "test": data_args.test_file}
        splits = {
            s: images.resolve_listed_paths(ds, column, Path(listings[s])) if holds_paths(ds, column) else ds
            for s, ds in splits.items()
        }
        if stream is not None and holds_paths(first, column):
            stream = images.resolve_listed_paths(stream, column, Path(listings["train"]))
    return splits, stream, column


def check_distinct_columns(column: str, label_column: str) -> None:
    if column == label_column:
        raise DataError(
            f"image_column and label_column are both {column!r}: the model would be given its answer; "
            "set image_column to the column of images or paths"
        )


def _check_images(splits, column: str, skip: bool) -> list[str]:
    """Decode every listed image file once, before training; fail (or skip) with the paths at fault."""
    notes = []
    for split, ds in list(splits.items()):
        if not holds_paths(ds, column):
            continue  # images stored in the dataset itself (Hub datasets) are decoded by datasets
        bad = image_check.find_unreadable(list(ds[column]))
        if not bad:
            continue
        listed = "; ".join(f"{path} ({why})" for path, why in bad[:10]) + (" …" if len(bad) > 10 else "")
        if not skip:
            raise DataError(
                f"{len(bad)} unreadable image file(s) in the {split} split: {listed}. "
                "Fix or remove them, or set skip_corrupt_images: true"
            )
        bad_paths = {path for path, _ in bad}
        # filter runs here, inside this iteration: the lambda never sees a later loop's bad_paths
        splits[split] = ds.filter(lambda batch: [p not in bad_paths for p in batch[column]], batched=True)  # noqa: B023
        notes.append(f"{split}: skipped {len(bad)} unreadable image file(s)")
    return notes


def build_preprocessing(config, data, model_config):
    """The checkpoint's image processor (a timm wrapper processor for timm backbones)."""
    if isinstance(model_config, TimmWrapperConfig) and config.model.timm_arch:
        return TimmWrapperImageProcessor(
            pretrained_cfg=model_config.pretrained_cfg, architecture=model_config.architecture
        )
    model_args = config.model
    try:
        return AutoImageProcessor.from_pretrained(
            model_path(model_args),
            revision=model_args.revision,
            trust_remote_code=model_args.trust_remote_code,
            cache_dir=model_args.cache_dir,
        )
    except (OSError, ValueError) as err:
        raise ModelSourceError(
            f"{model_args.model!r} has no image processor (preprocessor_config.json): {err}"
        ) from err


class _ImageTransform:
    """Decode, convert the colour mode and apply a torchvision transform to a batch (picklable for workers)."""

    def __init__(self, transform, column: str, channels: int):
        self.transform, self.column, self.channels = transform, column, channels

    def __repr__(self) -> str:  # part of the feature-cache key: a changed transform invalidates cached features
        return f"_ImageTransform(column={self.column!r}, channels={self.channels}, transform={self.transform!r})"

    def __call__(self, batch):
        pixels = [self.transform(images.to_mode(images.open_image(v), self.channels)) for v in batch[self.column]]
        return {"pixel_values": pixels, LABELS: batch[LABELS]}


def training_augmentation(config) -> str | None:
    """The augmentation preset in force (``auto`` resolved), or None when training images are not augmented."""
    chosen = config.task.augmentation
    if chosen == "auto":  # a frozen backbone's features are fixed: augmenting them only slows a probe down
        chosen = "none" if get_strategy(config.transfer.strategy).frozen_backbone else "light"
    return None if chosen == "none" else chosen


def prepare_datasets(config, processor, data, model_config=None, augment: bool = True):
    """Attach on-the-fly transforms: augmentation for train, the checkpoint's eval transform for the rest."""
    data_config = data_config_for(processor)
    augmentation = (training_augmentation(config) or "none") if augment else "none"
    train_tf, eval_tf = build_transforms(data_config, augmentation, config.task.hflip)
    channels = data_config["input_size"][0]
    column = data.columns["image"]
    data.notes.append(
        f"preprocessing: {data_config['input_size'][1]}x{data_config['input_size'][2]} {data_config['interpolation']}, "
        f"crop {data_config.get('crop_pct', 1.0):.3f} ({data_config.get('crop_mode', 'center')}), mean "
        f"{tuple(round(m, 3) for m in data_config['mean'])}, augmentation {augmentation}"
        + ("" if augment else " (linear-probe phase)")
    )
    prepared = {}
    for split, ds in data.splits.items():
        transform = _ImageTransform(train_tf if split == "train" else eval_tf, column, channels)
        ds = ds.select_columns([column, LABELS])
        # a stream is transformed as it is read (it has no with_transform)
        prepared[split] = (
            ds.map(transform, batched=True, remove_columns=[column])
            if streaming.is_streamed(ds)
            else ds.with_transform(transform)
        )
    return prepared


def build_model(config, data, model_config):
    """The pretrained backbone with a new head for the user's labels (timm ones wrapped for transformers)."""
    labels = data.config_fields()
    if config.model.timm_arch:
        model_config.update(labels)
        model_config.num_labels = labels["num_labels"]
        return build_timm_classifier(config.model, model_config)
    model_args = config.model
    head_config = without_head_code(copy.deepcopy(model_config))
    for key, value in labels.items():
        setattr(head_config, key, value)
    if isinstance(head_config, TimmWrapperConfig):
        # A timm wrapper config saves `label_names` in preference to id2label (a re-fine-tuned checkpoint would
        # keep its previous names), and timm's `model_args` may pin the old class count.
        head_config.label_names = list(data.label_names)
        head_config.model_args = {k: v for k, v in (head_config.model_args or {}).items() if k != "num_classes"}
    return AutoModelForImageClassification.from_pretrained(
        model_path(model_args),
        config=head_config,
        ignore_mismatched_sizes=True,  # the checkpoint's head (e.g. ImageNet's 1000 classes) is replaced
        dtype=torch.float32,  # fp32 master weights whatever the checkpoint's dtype (see text_classification)
        revision=model_args.revision,
        trust_remote_code=model_args.trust_remote_code,
        cache_dir=model_args.cache_dir,
    )


def collate(examples):
    targets = [e[LABELS] for e in examples]
    multi_hot = isinstance(targets[0], (list, tuple, torch.Tensor))  # multi-label: float targets for the BCE loss
    return {
        "pixel_values": torch.stack([e["pixel_values"] for e in examples]),
        "labels": torch.tensor(targets, dtype=torch.float32 if multi_hot else torch.long),
    }


def build_collator(config, processor):
    return collate


TASK = Task(
    name="image-classification",
    description="Classify images with a timm or transformers vision backbone (AutoModelForImageClassification).",
    options=ImageClassificationArguments,
    load_data=load_data,
    build_preprocessing=build_preprocessing,
    prepare_datasets=prepare_datasets,
    build_model=build_model,
    build_collator=build_collator,
    compute_metrics=compute_classification_metrics,
    load_model_config=load_model_config,
    training_augmentation=training_augmentation,
    auto_model=AutoModelForImageClassification,
    auto_processor=AutoImageProcessor,
    describe_examples=describe_examples,
    read_prediction_inputs=read_prediction_inputs,
    pixel_key="pixel_values",
    prediction_encoder=PredictionEncoder,
    sample_payloads=sample_payloads,
    input_axes={"pixel_values": ("batch",)},
    words=TaskWords(
        pipeline_example='"photo.jpg"',
        cli_example="photo.jpg photos/",
        inputs="Images",
        shift_examples="other cameras, lighting, framing",
    ),
    # On a GPU, decoding and resizing run in worker processes so they overlap the accelerator's work.
    gpu_dataloader_workers=8,
    training_defaults={
        "learning_rate": 1e-3,  # with the light augmentation, for fine-tuning a CNN end to end (docs/training.md)
        "num_train_epochs": 5,
        "per_device_train_batch_size": 32,
        "per_device_eval_batch_size": 64,
        "remove_unused_columns": False,  # with_transform needs the raw image column
    },
)
