"""``hftransfer train RECIPE|--options``: the training recipe in this process, or through ``accelerate launch``."""

from __future__ import annotations

from hftransfer.cli.launch import launch, wants_launch
from hftransfer.config.recipes import find_recipe
from hftransfer.training.recipe import main as train_main


def train_command(argv: list[str]) -> int:
    if argv and not argv[0].startswith("-"):
        argv = ["--config", find_recipe(argv[0]), *argv[1:]]
    if wants_launch(argv):
        return launch(argv)
    return train_main(argv)
