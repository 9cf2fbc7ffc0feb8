"""Recipe files shipped with hftransfer: where they are, what they do, and finding one by name."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from hftransfer.config.options import ConfigError, ModelArguments
from hftransfer.config.parse import load_recipe

KEY_MAPS = "key_maps"  # a folder of weight-renaming tables beside the recipes, not recipes themselves


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
