"""Flags made from a command's options dataclass (``config/commands.py``): the flag's type, default, help and valid
values are the field's, so ``hftransfer CMD --help``, the parsed values and the Python API share one definition."""

from __future__ import annotations

import argparse
import dataclasses

from hftransfer.config.limits import declared_type, describe_limits

_TYPES = {"int": int, "float": float, "str": str}


def add_options(parser: argparse.ArgumentParser, options_class: type) -> None:
    """One ``--name`` flag per field of ``options_class``."""
    for spec in dataclasses.fields(options_class):
        kind = _TYPES[declared_type(options_class, spec.name).replace(" | None", "").strip()]
        limits = describe_limits(spec.metadata)
        shown = f"{spec.metadata.get('help', '')} (default: {spec.default})" + (f" [{limits}]" if limits else "")
        parser.add_argument(f"--{spec.name}", type=kind, default=spec.default, help=shown)


def options_from(namespace: argparse.Namespace, options_class: type):
    """The options dataclass from the parsed flags (checked by its own ``__post_init__``)."""
    return options_class(**{spec.name: getattr(namespace, spec.name) for spec in dataclasses.fields(options_class)})
