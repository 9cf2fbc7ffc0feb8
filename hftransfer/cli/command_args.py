"""Commands that take ``hftransfer train``'s options beside their own (``rank``, ``audit``)."""

from __future__ import annotations

import argparse

from hftransfer.config.recipes import find_recipe


def split_command_args(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.Namespace, list[str]] | None:
    """This command's own options, and the rest as ``train``'s flags (a leading recipe name or path becomes
    ``--config``); None when help was asked for (it is printed)."""
    if "-h" in argv or "--help" in argv:
        parser.print_help()
        return None
    own, remaining = parser.parse_known_args(argv)
    if remaining and not remaining[0].startswith("-"):
        remaining = ["--config", find_recipe(remaining[0]), *remaining[1:]]
    return own, remaining
