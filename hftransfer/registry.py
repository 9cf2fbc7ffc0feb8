"""The task registry: one small typed record per task, registered in one place (``tasks/__init__.py``).

A task knows how to turn loaded data into model inputs, build a model with a head sized for the user's
labels, collate batches and score predictions. The training recipe (``train.py``) only talks to this
record, so a new task registers without touching the core.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Task:
    """Everything the recipe needs to know about one task.

    Every builder receives the run's ``RunConfig`` (``config.model``, ``.data``, ``.transfer``, ``.training``
    and ``.task``, an instance of ``options``), so a task reads exactly the options it needs.

    Attributes:
        name: registry key, e.g. ``"text-classification"``; also the ``transformers.pipeline`` tag.
        description: one line shown by ``hftransfer tasks``.
        options: a dataclass of this task's own options (fields become recipe keys and flags), or None.
        load_data: ``(config) -> LabelledData``; reads files, folders or a Hub dataset and fixes the labels.
        build_preprocessing: ``(config, data, model_config) -> processor``: tokenizer / image processor
            derived from the checkpoint.
        prepare_datasets: ``(config, processor, data) -> dict of split -> Dataset`` ready for the Trainer.
        build_model: ``(config, data, model_config) -> PreTrainedModel`` with a head for ``data.label_names``.
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
            default ``hftransfer.models.load_model_config`` (a Hub id or a local transformers folder).
        auto_model, auto_processor: the ``Auto*`` classes that load a finished run's model and processor.
        describe_examples: ``(data, split) -> list[str]``: how reports name examples (a path, a text).
        read_prediction_inputs: ``(items, options) -> [(name, payload)]`` for ``hftransfer predict``; checks
            every input before any prediction runs.
        prediction_encoder: ``processor -> callable(payloads) -> dict of tensors`` (the eval preprocessing).
        sample_payloads: ``(n) -> payloads`` of stand-in inputs, for checks when no real data is at hand.
        pixel_key: the collated batch's image tensor (``pixel_values``) for tasks whose inputs are images;
            it enables ``channels_last``.
    """

    name: str
    description: str
    options: type | None
    load_data: Callable[..., Any]
    build_preprocessing: Callable[..., Any]
    prepare_datasets: Callable[..., Any]
    build_model: Callable[..., Any]
    build_collator: Callable[..., Any]
    compute_metrics: Callable[..., dict]
    training_defaults: dict[str, Any] = field(default_factory=dict)
    suggest_training_args: Callable[[Any], dict[str, Any]] | None = None
    load_model_config: Callable[[Any], Any] | None = None  # ``(config) -> PretrainedConfig``; default: AutoConfig
    training_augmentation: Callable[[Any], str | None] | None = None
    auto_model: Any = None
    auto_processor: Any = None
    describe_examples: Callable[..., list[str]] | None = None
    read_prediction_inputs: Callable[..., list] | None = None
    prediction_encoder: Callable[..., Any] | None = None
    sample_payloads: Callable[..., list] | None = None
    pixel_key: str | None = None


_TASKS: dict[str, Task] = {}


class UnknownTaskError(ValueError):
    """Raised for a task name that is not registered; the message lists the valid names."""


def register_task(task: Task) -> Task:
    """Add ``task`` to the registry. A second task with the same name is a programming error."""
    if task.name in _TASKS:
        raise ValueError(f"task {task.name!r} is already registered")
    _TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The task registered as ``name``; an unknown name raises with the list of valid ones."""
    _ensure_builtin_tasks()
    try:
        return _TASKS[name]
    except KeyError:
        raise UnknownTaskError(
            f"unknown task {name!r}; valid tasks: {', '.join(sorted(_TASKS)) or '(none registered)'}"
        ) from None


def list_tasks() -> list[Task]:
    """All registered tasks, sorted by name."""
    _ensure_builtin_tasks()
    return [_TASKS[name] for name in sorted(_TASKS)]


def _ensure_builtin_tasks() -> None:
    # Importing the package registers the built-in tasks exactly once (explicit imports, no scanning).
    import hftransfer.tasks  # noqa: F401
