"""``hftransfer tasks``, ``hftransfer recipes`` and ``hftransfer accelerate-configs``: what is registered and
shipped."""

from __future__ import annotations

from hftransfer.cli.launch import shipped_templates
from hftransfer.config.recipes import shipped_recipes
from hftransfer.strategies import list_strategies
from hftransfer.tasks import list_tasks


def tasks_command(_: list[str]) -> int:
    for task in list_tasks():
        print(f"{task.name:24s} {task.description}")
    return 0


def strategies_command(_: list[str]) -> int:
    for strategy in list_strategies():
        print(f"{strategy.name:14s} {strategy.description}")
    return 0


def recipes_command(_: list[str]) -> int:
    for name, task, description in shipped_recipes():
        print(f"{name:48s} {task:22s} {description}")
    return 0


def accelerate_configs_command(_: list[str]) -> int:
    for name, path, description in shipped_templates():
        print(f"{name:18s} {description}\n{'':18s} {path}")
    return 0
