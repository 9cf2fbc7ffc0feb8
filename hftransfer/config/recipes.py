"""Recipe files shipped with hftransfer: where they are, what they do, and finding one by name."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from hftransfer.config.options import ConfigError, ModelArguments
from hftransfer.files.readers import yaml_mapping

KEY_MAPS = "key_maps"  # a folder of weight-renaming tables beside the recipes, not recipes themselves
SECTIONS = ("model", "data", "transfer", "training")  # a recipe may group its options under these
CONFIG_FILE = "hftransfer_config.yaml"  # the resolved recipe a run saves beside its model


def load_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """Read a recipe YAML into one flat mapping of option name to value (sections flattened)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"recipe file not found: {str(path)!r}")
    raw = yaml_mapping(path, "recipe", "recipe (YAML)")
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        # `model: bert-base-uncased` is the model option; `model: {model: ..., task: ...}` is a section.
        if key in SECTIONS and isinstance(value, dict):
            _merge_unique(flat, value, where=f"section {key!r} of {path}")
        else:
            _merge_unique(flat, {key: value}, where=str(path))
    return flat


def _merge_unique(flat: dict[str, Any], items: dict[str, Any], where: str) -> None:
    for key, value in items.items():
        if key in flat:
            raise ConfigError(f"option {key!r} is set twice in {where}")
        flat[key] = value


def recipes_root() -> Path:
    """Shipped recipes: package data when installed, the repository's ``recipes/`` in a checkout."""
    packaged = resources.files("hftransfer") / "recipes"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "recipes"


def shipped_recipes() -> list[tuple[str, str, str]]:
    """(name, task, description) of each shipped recipe; the description is its first comment line."""
    root = recipes_root()
    found = []
    for path in sorted(root.rglob("*.yaml")):
        if KEY_MAPS in path.relative_to(root).parts:
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
