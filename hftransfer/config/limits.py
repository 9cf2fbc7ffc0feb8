"""The one validator of option values: ranges and choices written once, in each option's field metadata, and checked
for every value from every source (flags, recipes, keywords, saved configs, the other commands' options) before
any work.

An option declares ``metadata={"help": …, "range": Range(0, 1, high_open=True)}`` or ``"choices": (…)``;
``check_fields`` reads them, and refuses any float that is not finite (a NaN tolerance can never fail a check and is
no valid JSON). transformers owns ``TrainingArguments``' fields, so their ranges live in ``TRAINING_RANGES`` here,
read the same way. ``tests/unit/config/test_limits.py`` generates bad values from this metadata for every option.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from hftransfer.errors import HftransferError

VALIDATOR_METADATA = ("range", "choices")  # the metadata keys this module reads (not argparse's)
SEED_MAX = 2**32 - 1  # numpy's and torch's seeds are 32-bit unsigned


class ConfigError(HftransferError):
    """A recipe or flag that cannot be used; the message names the value and the valid choices."""


class OptionValueError(ConfigError):
    """An option value out of its range or choices; the message names the option, the value and what is valid."""


@dataclass(frozen=True)
class Range:
    """``low <= value <= high`` (either end open, or absent)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def admits(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        low, high = _number(self.low), _number(self.high)
        if self.high is None:
            return f"> {low}" if self.low_open else f"at least {low}"
        if self.low is None:
            return f"< {high}" if self.high_open else f"at most {high}"
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
AT_LEAST_ONE = Range(1)
FRACTION = Range(0, 1, high_open=True)  # probabilities such as dropout: 1 would drop everything
SEED = Range(0, SEED_MAX)

# transformers' TrainingArguments, which would accept these values and fail later (numpy's seed, the optimizer, the
# first batch) or train nonsense; None stays allowed where the field is optional.
TRAINING_RANGES: dict[str, Range] = {
    "seed": SEED,
    "data_seed": SEED,
    "learning_rate": POSITIVE,
    "num_train_epochs": NON_NEGATIVE,
    "max_steps": Range(-1),
    "warmup_steps": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE,
    "label_smoothing_factor": FRACTION,
    "max_grad_norm": NON_NEGATIVE,
    "per_device_train_batch_size": AT_LEAST_ONE,
    "per_device_eval_batch_size": AT_LEAST_ONE,
    "gradient_accumulation_steps": AT_LEAST_ONE,
    "eval_accumulation_steps": AT_LEAST_ONE,
    "logging_steps": POSITIVE,
    "eval_steps": POSITIVE,
    "save_steps": POSITIVE,
    "save_total_limit": AT_LEAST_ONE,
    "dataloader_num_workers": NON_NEGATIVE,
    "adam_beta1": FRACTION,
    "adam_beta2": FRACTION,
    "adam_epsilon": POSITIVE,
}


def option(help: str, range: Range | None = None, choices: tuple | None = None) -> dict[str, Any]:
    """The metadata of an option's field: its help text, and the range or choices its value must keep."""
    return {"help": help, **({"range": range} if range else {}), **({"choices": choices} if choices else {})}


def describe_limits(metadata) -> str:
    """What an option's metadata admits, for its help text ("valid: in [0, 1)", "valid: auto, none")."""
    if metadata.get("choices"):
        return "valid: " + ", ".join(map(str, metadata["choices"]))
    return f"valid: {metadata['range'].describe()}" if metadata.get("range") else ""


def check_value(name: str, value: Any, range: Range | None = None, choices: tuple | None = None) -> None:
    """One value (each item of a list) against its option's range and choices; floats must be finite."""
    for item in value if isinstance(value, (list, tuple)) else [value]:
        if item is None:
            continue
        if isinstance(item, float) and not math.isfinite(item):
            raise OptionValueError(f"{name} must be a finite number, got {item}")
        if choices is not None and item not in choices:
            raise OptionValueError(f"unknown {name} {item!r}; valid: {', '.join(map(str, choices))}")
        if range is not None and isinstance(item, (int, float)) and not isinstance(item, bool):
            if not range.admits(item):
                raise OptionValueError(f"{name} must be {range.describe()}, got {item!r}")


def check_fields(options: Any, ranges: dict[str, Range] | None = None) -> None:
    """Every field of the dataclass ``options`` against its metadata, its value of the field's plain type; with
    ``ranges``, the fields another library owns (and types: its own parser converted them) against those ranges.
    The first bad value raises ``OptionValueError``."""
    for spec in dataclasses.fields(options):
        if spec.name.startswith("_"):
            continue
        metadata = spec.metadata or {}
        value = getattr(options, spec.name, None)
        if ranges is None:
            _check_type(type(options), spec, value)
        limit = metadata.get("range") or (ranges or {}).get(spec.name)
        check_value(spec.name, value, limit, metadata.get("choices"))


_BASIC_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def declared_type(owner: type, name: str) -> str:
    """A field's annotation as written (``HfArgumentParser`` rewrites ``Field.type`` in place when it parses)."""
    for klass in owner.__mro__:
        if name in getattr(klass, "__annotations__", {}):
            declared = klass.__annotations__[name]
            return declared if isinstance(declared, str) else getattr(declared, "__name__", "")
    return ""


def _check_type(owner: type, spec: dataclasses.Field, value: Any) -> None:
    """A value given in Python (no parser converted it) of the field's plain type: an int is no bool, a float takes an
    int, a string is a string. Fields of other types are their parsers' business."""
    declared = declared_type(owner, spec.name)
    kind = _BASIC_TYPES.get(declared.replace(" | None", "").replace("Optional[", "").rstrip("]").strip())
    if value is None or kind is None:
        return
    fits = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float:
        fits = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not fits:
        names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
        raise OptionValueError(f"{spec.name} takes {names[kind]}, got {type(value).__name__} {value!r}")
