"""The task record: everything the core needs to know about one task, as plain typed data.

A task knows how to turn loaded data into model inputs, build a model with a head sized for the user's
labels, collate batches and score predictions, and how its examples read in a model card or an export.
The training recipe, evaluation, predict, export and the model card only talk to this record, so a new
task registers (``tasks/__init__.py``) without touching the core.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

from hftransfer.errors import HftransferError

if TYPE_CHECKING:  # for hints only
    from transformers import PreTrainedModel

    from hftransfer.data.labels import LabelledData
    from hftransfer.training.run_config import RunConfig


@dataclass(frozen=True)
class TaskWords:
    """How a task's inputs read in a model card: an example input for ``pipeline`` and for ``hftransfer predict``,
    what an input is called, and examples of distribution shift to warn about."""

    pipeline_example: str
    cli_example: str
    inputs: str
    shift_examples: str


class LoadData(Protocol):
    def __call__(self, config: RunConfig, model_labels: list[str] | None = None, /) -> LabelledData: ...


class BuildPreprocessing(Protocol):
    def __call__(self, config: RunConfig, data: LabelledData, model_config: Any, /) -> Any: ...


class PrepareDatasets(Protocol):
    def __call__(
        self, config: RunConfig, processor: Any, data: LabelledData, model_config: Any = None, augment: bool = True, /
    ) -> dict[str, Any]: ...


class BuildModel(Protocol):
    def __call__(self, config: RunConfig, data: LabelledData, model_config: Any, /) -> PreTrainedModel: ...


@dataclass(frozen=True)
class Task:
    """Everything the recipe needs to know about one task.

    Every builder receives the run's ``RunConfig`` (``config.model``, ``.data``, ``.transfer``, ``.training``
    and ``.task``, an instance of ``options``), so a task reads exactly the options it needs.

    Attributes:
        name: registry key, e.g. ``"text-classification"``; also the ``transformers.pipeline`` tag.
        description: one line shown by ``hftransfer tasks``.
        options: a dataclass of this task's own options (fields become recipe keys and flags), or None.
        load_data: reads files, folders, memory or a Hub dataset and fixes the labels (``LoadData``; with
            ``model_labels``, evaluation of a trained model: its label ids, no carving).
        build_preprocessing: the tokenizer / image processor derived from the checkpoint (``BuildPreprocessing``).
        prepare_datasets: split -> Dataset ready for the Trainer (``PrepareDatasets``; ``augment=False``: the
            training split transformed like evaluation's).
        build_model: the ``PreTrainedModel`` with a head for ``data.label_names`` (``BuildModel``).
        build_collator: ``(config, processor) -> collate function``.
        compute_metrics: ``EvalPrediction -> dict`` used by the Trainer every evaluation.
        training_defaults: ``TrainingArguments`` values this task prefers over transformers' defaults
            (a recipe YAML and CLI flags still win).
        suggest_training_args: ``model_config -> dict`` of ``TrainingArguments`` values that depend on the
            checkpoint (e.g. a learning rate by model size); applied only where the user set nothing.
        training_augmentation: ``(config) -> str | None``: the augmentation active in training, None when the
            training examples are transformed exactly like evaluation ones (then frozen features can be cached).
            ``prepare_datasets`` takes ``augment=False`` to build un-augmented training examples.
        load_model_config: resolves the backbone's config, the first and cheapest proof that it exists;
            default ``hftransfer.backbones.checkpoints.load_model_config`` (a Hub id or a local folder).
        auto_model, auto_processor: the ``Auto*`` classes that load a finished run's model and processor.
        processor_files: files of which a saved run needs at least one for its processor; a folder with none is
            refused (transformers 5 builds an empty tokenizer from nothing, which predicts garbage).
        describe_examples: ``(data, split) -> list[str]``: how reports name examples (a path, a text).
        read_prediction_inputs: ``(items, options) -> [(name, payload)]`` for ``hftransfer predict``; checks
            every input before any prediction runs.
        prediction_encoder: ``processor -> callable(payloads) -> dict of tensors`` (the eval preprocessing).
        sample_payloads: ``(n) -> payloads`` of stand-in inputs, for checks when no real data is at hand.
        pixel_key: the collated batch's image tensor (``pixel_values``) for tasks whose inputs are images;
            it enables ``channels_last``.
        input_axes: each model input's variable axes by name (``{"input_ids": ("batch", "sequence")}``), for
            exports with dynamic shapes.
        words: how the task's inputs read in a model card (see ``TaskWords``).
        gpu_dataloader_workers: DataLoader worker processes on a machine with an accelerator (none on a CPU).
        train_sampler: ``(config, dataset, batch_size) -> Sampler | None``: the order of the prepared training
            examples (texts: batches of similar lengths); None or returning None: random batches.
    """

    name: str
    description: str
    options: type | None
    load_data: LoadData
    build_preprocessing: BuildPreprocessing
    prepare_datasets: PrepareDatasets
    build_model: BuildModel
    build_collator: Callable[..., Any]
    compute_metrics: Callable[..., dict]
    training_defaults: dict[str, Any] = field(default_factory=dict)
    suggest_training_args: Callable[[Any], dict[str, Any]] | None = None
    load_model_config: Callable[[Any], Any] | None = None  # ``(config) -> PretrainedConfig``; default: AutoConfig
    training_augmentation: Callable[[Any], str | None] | None = None
    auto_model: Any = None
    auto_processor: Any = None
    processor_files: tuple[str, ...] = ()
    describe_examples: Callable[..., list[str]] | None = None
    read_prediction_inputs: Callable[..., list] | None = None
    prediction_encoder: Callable[..., Any] | None = None
    sample_payloads: Callable[..., list] | None = None
    pixel_key: str | None = None
    input_axes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    words: TaskWords | None = None
    gpu_dataloader_workers: int = 4
    train_sampler: Callable[..., Any] | None = None


class UnknownTaskError(HftransferError):
    """Raised for a task name that is not registered; the message lists the valid names."""
