"""The one validator (hftransfer/config/limits.py), property-tested from the options' own metadata: for every option of
every command, values outside its range or choices are refused with a line naming the option, whether they come as
a dataclass value, a flag, a keyword, a recipe or a saved config; values inside are accepted."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import tempfile

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hftransfer.config.commands import COMMAND_OPTIONS
from hftransfer.config.limits import TRAINING_RANGES, Range, check_value
from hftransfer.distillation.recipe import DistillOptions
from hftransfer.errors import HftransferError
from hftransfer.tasks import list_tasks
from hftransfer.training.parse import option_dataclasses, parse_config

TASK_OF = {task.options: task.name for task in list_tasks() if task.options}
TRAIN_CLASSES = [*option_dataclasses()[:-1], *TASK_OF]  # hftransfer's, every strategy's and every task's
ALL_CLASSES = [*TRAIN_CLASSES, *COMMAND_OPTIONS, DistillOptions]
LIMITED = [
    (cls, spec)
    for cls in ALL_CLASSES
    for spec in dataclasses.fields(cls)
    if spec.metadata.get("range") or spec.metadata.get("choices")
]
TRAIN_LIMITED = [(cls, spec) for cls, spec in LIMITED if cls in TRAIN_CLASSES]
settings.register_profile("hftransfer", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("hftransfer")


def _kind(spec: dataclasses.Field) -> str:
    text = str(spec.type)
    return "float" if "float" in text else "int" if "int" in text else "str"


def _listed(spec: dataclasses.Field) -> bool:
    return "list" in str(spec.type)


def bad_values(spec: dataclasses.Field) -> st.SearchStrategy:
    """Values the option must refuse: outside its range (ends included where open), not finite, not a choice."""
    choices, limit = spec.metadata.get("choices"), spec.metadata.get("range")
    if choices:
        return st.text(min_size=1, max_size=12).filter(lambda v: v not in choices)
    options = []
    integer = _kind(spec) == "int"
    if limit.low is not None:
        top = limit.low if limit.low_open else (limit.low - 1 if integer else _below(limit.low))
        options.append(
            st.integers(max_value=int(top))
            if integer
            else st.floats(max_value=top, allow_nan=False, allow_subnormal=False)
        )
    if limit.high is not None:
        bottom = (
            limit.high if limit.high_open else (limit.high + 1 if integer else math.nextafter(limit.high, math.inf))
        )
        options.append(
            st.integers(min_value=int(bottom))
            if integer
            else st.floats(min_value=bottom, allow_nan=False, allow_subnormal=False)
        )
    if not integer:
        options.append(st.sampled_from([math.nan, math.inf, -math.inf]))
    values = st.one_of(*options)
    return values.map(lambda v: [v]) if _listed(spec) else values


def _below(value: float) -> float:
    """The largest float under ``value`` that is a normal number (the suite runs with denormals flushed to zero)."""
    return -sys.float_info.min if value == 0 else math.nextafter(value, -math.inf)


def good_values(spec: dataclasses.Field) -> st.SearchStrategy:
    choices, limit = spec.metadata.get("choices"), spec.metadata.get("range")
    if choices:
        return st.sampled_from(choices)
    integer = _kind(spec) == "int"
    low = limit.low if limit.low is not None else -1e6
    high = limit.high if limit.high is not None else (10**6 if integer else 1e6)
    if integer:
        values = st.integers(min_value=int(low) + int(limit.low_open), max_value=int(high) - int(limit.high_open))
    else:
        bottom = (sys.float_info.min if low == 0 else math.nextafter(low, math.inf)) if limit.low_open else low
        top = _below(high) if limit.high_open else high
        values = st.floats(min_value=bottom, max_value=top, allow_nan=False, allow_subnormal=False)
    return values.map(lambda v: [v]) if _listed(spec) else values


def _shown(value) -> str:
    return str(value[0] if isinstance(value, list) else value)


def canonical_bad(spec: dataclasses.Field):
    """One bad value per option, deterministic: just outside the lower end (else the upper), or no choice."""
    if spec.metadata.get("choices"):
        return "no-such-choice"
    limit: Range = spec.metadata["range"]
    integer = _kind(spec) == "int"
    if limit.low is not None:
        value = limit.low if limit.low_open else limit.low - (1 if integer else 0.5)
    else:
        value = limit.high if limit.high_open else limit.high + (1 if integer else 0.5)
    value = int(value) if integer else float(value)
    return [value] if _listed(spec) else value


def _flag_argv(cls, spec, value) -> list[str]:
    task = ["--task", TASK_OF[cls]] if cls in TASK_OF else []
    if spec.name == "head_hidden_sizes":
        task += ["--head", "mlp"]
    return [*task, "--model", "m", "--train_file", "t.csv", f"--{spec.name}", _shown(value)]


# --- every option: a dataclass value, in and out of range -------------------------------------------------------


@given(data=st.data())
@settings(max_examples=300)
def test_every_option_refuses_values_outside_its_range_and_names_itself(data):
    cls, spec = data.draw(st.sampled_from(LIMITED), label="option")
    value = data.draw(bad_values(spec), label="value")
    extra = {"head": "mlp"} if spec.name == "head_hidden_sizes" else {}
    with pytest.raises(HftransferError, match=spec.name) as refused:
        cls(**{spec.name: value, **extra})
    assert "\n" not in str(refused.value)


@given(data=st.data())
@settings(max_examples=300)
def test_every_option_accepts_values_inside_its_range(data):
    cls, spec = data.draw(st.sampled_from(LIMITED), label="option")
    value = data.draw(good_values(spec), label="value")
    extra = {"head": "mlp"} if spec.name == "head_hidden_sizes" else {}
    if spec.name == "head_hidden_sizes" and value[0] < 1:
        return
    cls(**{spec.name: value, **extra})  # nothing raised


def test_every_numeric_option_declares_its_range():
    """A new int or float option cannot skip the validator: it declares a range (or choices) in its metadata."""
    missing = [
        f"{cls.__name__}.{spec.name}"
        for cls in ALL_CLASSES
        for spec in dataclasses.fields(cls)
        if _kind(spec) in {"int", "float"} and not (spec.metadata.get("range") or spec.metadata.get("choices"))
    ]
    assert missing == []


# --- every train option through every source: flags, keywords, a recipe (a saved config is one) ----------------


@pytest.mark.parametrize("cls, spec", TRAIN_LIMITED, ids=[s.name for _, s in TRAIN_LIMITED])
def test_every_train_option_is_refused_alike_from_flags_keywords_and_recipes(cls, spec, tmp_path):
    value = canonical_bad(spec)
    with pytest.raises(HftransferError, match=spec.name):
        parse_config(_flag_argv(cls, spec, value))
    keywords = {"model": "m", "train_file": "t.csv", spec.name: value}
    if cls in TASK_OF:
        keywords["task"] = TASK_OF[cls]
    if spec.name == "head_hidden_sizes":
        keywords["head"] = "mlp"
    with pytest.raises(HftransferError, match=spec.name):
        parse_config([], options=keywords)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("\n".join(f"{k}: {v!r}" if isinstance(v, str) else f"{k}: {v}" for k, v in keywords.items()))
    with pytest.raises(HftransferError, match=spec.name):
        parse_config(["--config", str(recipe)])


@pytest.mark.parametrize("name", sorted(TRAINING_RANGES))
def test_every_limited_trainer_option_is_refused_before_any_work(name):
    limit = TRAINING_RANGES[name]
    value = limit.low if limit.low_open else limit.low - 1
    with pytest.raises(HftransferError, match=name):
        parse_config(["--model", "m", "--train_file", "t.csv", f"--{name}", str(int(value))])


@given(value=st.sampled_from(["nan", "inf", "-inf"]), name=st.sampled_from(["learning_rate", "weight_decay"]))
@settings(max_examples=10)
def test_trainer_floats_must_be_finite(value, name):
    with pytest.raises(HftransferError, match=f"{name} must be a finite number"):
        parse_config(["--model", "m", "--train_file", "t.csv", f"--{name}={value}"])


def test_the_issues_values_are_refused_with_the_range():
    cases = {
        ("--seed", "-1"): "seed must be in [0, 4294967295], got -1",
        ("--strategy", "lora", "--lora_dropout", "1.5", "--dry_run"): "lora_dropout must be in [0, 1), got 1.5",
        ("--time_budget", "0"): "time_budget must be positive, got '0'",
        ("--max_length", "0"): "max_length must be at least 2, got 0",
    }
    for flags, message in cases.items():
        with pytest.raises(HftransferError) as refused:
            parse_config(["--model", "m", "--train_file", "t.csv", *flags])
        assert message in str(refused.value)


def test_a_value_given_in_python_is_of_the_options_type():
    for cls, spec in LIMITED:
        if _kind(spec) == "int" and not _listed(spec):
            with pytest.raises(HftransferError, match=f"{spec.name} takes an integer"), _named(cls, spec):
                cls(**{spec.name: "3"})
            with pytest.raises(HftransferError, match=spec.name):
                cls(**{spec.name: True})


def test_check_value_reads_lists_item_by_item():
    check_value("sizes", [1, 2], Range(1))
    with pytest.raises(HftransferError, match="sizes must be at least 1, got 0"):
        check_value("sizes", [1, 0], Range(1))


class _named:
    """Names the option in a failure (the loop tests many)."""

    def __init__(self, cls, spec):
        self.name = f"{cls.__name__}.{spec.name}"

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        if kind is not None and not issubclass(kind, HftransferError):
            raise AssertionError(f"{self.name}: {kind.__name__}: {error}")
        return False


# --- every option, whatever its type: a value of the wrong kind ------------------------------------------------------

EVERY_TRAIN_OPTION = [(cls, spec) for cls in TRAIN_CLASSES for spec in dataclasses.fields(cls)]


def wrong_kind(cls, spec) -> st.SearchStrategy:
    """A value no option of this declared type takes: a mapping for anything but a mapping, words for numbers and
    switches."""
    declared = str(spec.type)
    mapping = st.dictionaries(st.text(min_size=1, max_size=4), st.integers(), min_size=1, max_size=2)
    if "bool" in declared:
        return st.one_of(mapping, st.sampled_from(["maybe", "sometimes", "2"]))
    if "int" in declared or "float" in declared:
        return st.one_of(mapping, st.sampled_from(["many", "a few", "1e", "--1"]))
    return mapping


@given(data=st.data())
@settings(max_examples=150)
def test_every_train_option_refuses_a_value_of_the_wrong_kind_and_names_itself(data):
    cls, spec = data.draw(st.sampled_from(EVERY_TRAIN_OPTION), label="option")
    value = data.draw(wrong_kind(cls, spec), label="value")
    keywords = {"model": "m", "train_file": "t.csv", spec.name: value}
    if cls in TASK_OF:
        keywords["task"] = TASK_OF[cls]
    with pytest.raises(HftransferError, match=spec.name) as refused:
        parse_config([], options=keywords)
    assert "\n" not in str(refused.value)
    recipe = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    with recipe:
        yaml.safe_dump(keywords, recipe)
    try:
        with pytest.raises(HftransferError, match=spec.name):
            parse_config(["--config", recipe.name])
    finally:
        os.unlink(recipe.name)


COMMAND_FIELDS = [(cls, spec) for cls in (*COMMAND_OPTIONS, DistillOptions) for spec in dataclasses.fields(cls)]


@given(data=st.data())
@settings(max_examples=100)
def test_every_command_option_refuses_a_value_of_the_wrong_kind(data):
    cls, spec = data.draw(st.sampled_from(COMMAND_FIELDS), label="option")
    value = data.draw(wrong_kind(cls, spec), label="value")
    with pytest.raises(HftransferError, match=spec.name):
        cls(**{spec.name: value})
