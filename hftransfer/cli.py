"""The ``hftransfer`` command: ``train``, ``tasks`` and ``recipes``."""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from hftransfer.config import ConfigError, ModelArguments, load_recipe
from hftransfer.data import DataError
from hftransfer.models import ModelSourceError
from hftransfer.registry import UnknownTaskError, list_tasks
from hftransfer.runtime import reexec_with_tuned_malloc

KEY_MAPS = "key_maps"
USER_ERRORS = (ConfigError, DataError, ModelSourceError, UnknownTaskError)


def run_with_clean_errors(function, argv: list[str]) -> int:
    """Run ``function(argv)``; bad input ends with one readable line and exit code 2, not a traceback."""
    from hftransfer.train import OutputDirError

    try:
        return function(argv) or 0
    except (*USER_ERRORS, OutputDirError) as err:
        print(f"hftransfer: error: {err}", file=sys.stderr)
        return 2


def recipes_root() -> Path:
    """Shipped recipes: package data when installed, the repository's ``recipes/`` in a checkout."""
    packaged = resources.files("hftransfer") / "recipes"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "recipes"


def shipped_recipes() -> list[tuple[str, str, str]]:
    """(name, task, description) of each shipped recipe; the description is its first comment line."""
    root = recipes_root()
    found = []
    for path in sorted(root.rglob("*.yaml")):
        if KEY_MAPS in path.relative_to(root).parts:  # weight-renaming tables, not recipes
            continue
        text = path.read_text(encoding="utf-8")
        comments = [line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")]
        task = load_recipe(path).get("task", ModelArguments.task)
        found.append((str(path.relative_to(root).with_suffix("")), task, comments[0] if comments else ""))
    return found


def find_recipe(name: str) -> str:
    """A recipe path as given, or the name of a shipped recipe (``text_classification/minilm_sst2``)."""
    if Path(name).is_file():
        return name
    candidate = recipes_root() / (name if name.endswith(".yaml") else f"{name}.yaml")
    if candidate.is_file():
        return str(candidate)
    names = ", ".join(n for n, _, _ in shipped_recipes())
    raise ConfigError(f"recipe not found: {name!r} (neither a file nor a shipped recipe; shipped: {names})")


def _train(rest: list[str]) -> int:
    from hftransfer.train import main as train_main

    if rest and not rest[0].startswith("-"):
        rest = ["--config", find_recipe(rest[0]), *rest[1:]]
    if "-h" not in rest and "--help" not in rest:
        reexec_with_tuned_malloc("hftransfer.train", rest)
    return train_main(rest)


def _tasks(_: list[str]) -> int:
    for task in list_tasks():
        print(f"{task.name:24s} {task.description}")
    return 0


def _recipes(_: list[str]) -> int:
    for name, task, description in shipped_recipes():
        print(f"{name:48s} {task:22s} {description}")
    return 0


COMMANDS = {
    "train": (_train, "fine-tune: hftransfer train RECIPE.yaml [--option value ...] or hftransfer train --model ..."),
    "tasks": (_tasks, "list the registered tasks"),
    "recipes": (_recipes, "list the shipped recipes with their task and description"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="hftransfer", description="Transfer-learning fine-tuner for the HF stack.")
    parser.add_argument("command", choices=sorted(COMMANDS), help="; ".join(f"{k}: {v[1]}" for k, v in COMMANDS.items()))
    if not argv or argv[0] in {"-h", "--help"}:
        parser.print_help()
        return 0
    if argv[0] not in COMMANDS:
        parser.error(f"unknown command {argv[0]!r}; valid commands: {', '.join(sorted(COMMANDS))}")
    function, _ = COMMANDS[argv[0]]
    return run_with_clean_errors(function, argv[1:])


if __name__ == "__main__":
    sys.exit(main())
