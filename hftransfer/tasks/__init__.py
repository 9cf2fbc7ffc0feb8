"""The task registry: built-in tasks are registered here, in one place, by explicit imports.

A task is a small typed record (``tasks/base.py``); the core asks the record and never compares task names.
Registering another task is one ``register_task`` call with its record, or an ``hftransfer.tasks`` entry point
(``hftransfer/registry.py``: the same pattern as strategies).
"""

from __future__ import annotations

from hftransfer.registry import Registry
from hftransfer.tasks import image_classification, text_classification
from hftransfer.tasks.base import Task, UnknownTaskError

TASKS: Registry[Task] = Registry("task", "hftransfer.tasks", UnknownTaskError)


def register_task(task: Task) -> Task:
    """Add ``task`` to the registry (a second task of the same name is a programming error); returns it."""
    return TASKS.register(task)


def get_task(name: str) -> Task:
    """The task registered as ``name``; an unknown name raises with the list of valid ones."""
    return TASKS.get(name)


def list_tasks() -> list[Task]:
    """All registered tasks, sorted by name."""
    return sorted(TASKS.records(), key=lambda task: task.name)


register_task(text_classification.TASK)
register_task(image_classification.TASK)
