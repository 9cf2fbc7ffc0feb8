"""The task registry: built-in tasks are registered here, in one place, by explicit imports.

A task is a small typed record (``tasks/base.py``); the core asks the record and never compares task names.
Registering another task is one ``register_task`` call with its record.
"""

from __future__ import annotations

from hftransfer.tasks import image_classification, text_classification
from hftransfer.tasks.base import Task, UnknownTaskError

_TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Add ``task`` to the registry. A second task with the same name is a programming error."""
    if task.name in _TASKS:
        raise ValueError(f"task {task.name!r} is already registered")
    _TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The task registered as ``name``; an unknown name raises with the list of valid ones."""
    try:
        return _TASKS[name]
    except KeyError:
        raise UnknownTaskError(
            f"unknown task {name!r}; valid tasks: {', '.join(sorted(_TASKS)) or '(none registered)'}"
        ) from None


def list_tasks() -> list[Task]:
    """All registered tasks, sorted by name."""
    return [_TASKS[name] for name in sorted(_TASKS)]


register_task(text_classification.TASK)
register_task(image_classification.TASK)
