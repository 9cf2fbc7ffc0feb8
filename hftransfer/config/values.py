"""Option values that arrive as data (a recipe's YAML, the Python API's keywords): named, typed and checked.

Values from the command line are strings that argparse converts; values from YAML or Python are already objects,
which argparse passes through unchecked (a default is converted only when it is a string). Each such value is
converted here by the option's own argparse type, item by item for list options, and checked against its
choices, so a recipe, a keyword and a flag accept the same values and refuse bad ones with the same kind of line.
A value is never parsed as a flag: ``class_names=["neg", "--output_dir", "x"]`` is three class names.
"""

from __future__ import annotations

import argparse
import difflib
import os
from typing import Any

from transformers.hf_argparser import string_to_bool

from hftransfer.config.options import ConfigError

LIST_NARGS = ("+", "*")


def check_option_names(given, known: set[str], where: str) -> None:
    """Refuse names that are not options, suggesting the closest ones (``lerning_rate`` → ``learning_rate``)."""
    unknown = [name for name in given if name not in known]
    if not unknown:
        return
    hints = []
    for name in unknown[:5]:
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.75)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ConfigError(
        f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(hints)} in {where}; options are "
        "the flags of `hftransfer train --help` (e.g. model, train_file, learning_rate)"
    )


def check_option_values(
    parser: argparse.ArgumentParser, values: dict[str, Any], where: str, annotations: dict[str, Any]
) -> dict[str, Any]:
    """``values`` converted by each option's argparse type (None stays None: the option's own default)."""
    actions = {}
    for action in parser._actions:  # the storing action of each option (not --no_x, which shares its dest)
        if action.option_strings and not isinstance(action, argparse._StoreFalseAction):
            actions.setdefault(action.dest, action)
    return {
        name: value
        if value is None or name not in actions
        else _converted(actions[name], value, where, annotations.get(name))
        for name, value in values.items()
    }


def field_annotations(*classes: type) -> dict[str, Any]:
    """Each option's declared type (as written in its dataclass), for the values argparse has no type for. Read
    from the annotations: ``HfArgumentParser`` rewrites ``dataclasses.fields(...)[i].type`` (``str | list[str]``
    becomes ``str``)."""
    hints = {}
    for cls in (c for c in classes if c is not None):
        for klass in reversed(cls.__mro__):
            hints.update(getattr(klass, "__annotations__", {}))
    return hints


def _converted(action: argparse.Action, value: Any, where: str, annotation: Any) -> Any:
    name = action.dest
    if action.nargs in LIST_NARGS:
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if isinstance(value, (dict, set)):
            raise ConfigError(f"{name} in {where} takes a list of {_kind(action, plural=True)}, got {value!r}")
        return [_converted_one(action, item, where, annotation, in_list=True) for item in items]
    return _converted_one(action, value, where, annotation)


def _converted_one(action: argparse.Action, value: Any, where: str, annotation: Any, in_list: bool = False) -> Any:
    name, kind = action.dest, action.type
    shown = f"{name} in {where}" + (" (an item of the list)" if in_list else "")
    if isinstance(value, (dict, list, tuple, set)):
        if _accepts_structures(annotation) and not in_list:
            return value  # options such as lr_scheduler_kwargs take a mapping as it is
        raise ConfigError(f"{shown} takes {_kind(action)}, got {type(value).__name__} {value!r}")
    try:
        converted = _convert(kind, value)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        raise ConfigError(f"{shown} takes {_kind(action)}, got {value!r}") from None
    if action.choices is not None and converted not in action.choices:
        raise ConfigError(f"{shown}: {value!r} is not {_kind(action)}")
    return converted


def _convert(kind, value: Any) -> Any:
    if kind is None:
        return value
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        return int(value) if not isinstance(value, str) else int(value.strip())
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(value)
        return float(value)
    if kind is string_to_bool:
        return value if isinstance(value, bool) else string_to_bool(str(value))
    if kind is str:
        if isinstance(value, (str, int, float, os.PathLike)) and not isinstance(value, bool):
            return os.fspath(value) if isinstance(value, os.PathLike) else str(value)
        raise ValueError(value)
    if isinstance(value, str):
        return kind(value)  # argparse's own type function for the option (a choice, an enum)
    return value  # an object of the option's own type (a ParallelismConfig, a DebugOption)


def _accepts_structures(annotation: Any) -> bool:
    text = str(annotation).lower()
    return "dict" in text or "list" in text


def _kind(action: argparse.Action, plural: bool = False) -> str:
    if action.choices is not None:
        choices = ", ".join(str(getattr(c, "value", c)) for c in action.choices)
        return ("values among " if plural else "one of ") + choices
    if plural:
        names = {int: "integers", float: "numbers", string_to_bool: "true/false values", str: "strings"}
        return names.get(action.type, "values")
    names = {int: "an integer", float: "a number", string_to_bool: "true or false", str: "a string"}
    return names.get(action.type, f"a {getattr(action.type, '__name__', 'value')}")
