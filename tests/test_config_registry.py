"""Task registry and configuration precedence: defaults < task defaults < recipe YAML < CLI flags."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

import hftransfer.tasks as registry
from hftransfer.config.options import ConfigError
from hftransfer.strategies.base import StrategyError
from hftransfer.tasks import UnknownTaskError, get_task, list_tasks, register_task, text_classification
from hftransfer.training.parse import BASE_TRAINING_DEFAULTS, RunConfig, load_recipe, parse_config


def test_text_classification_is_registered():
    assert get_task("text-classification") is text_classification.TASK
    assert "text-classification" in [t.name for t in list_tasks()]


def test_unknown_task_lists_valid_names():
    with pytest.raises(UnknownTaskError, match="unknown task 'text-clasification'; valid tasks: .*text-classification"):
        get_task("text-clasification")


def test_duplicate_task_name_raises():
    register_task(text_classification.TASK)  # the same record again (an entry point and a call): no change
    with pytest.raises(ValueError, match="task 'text-classification' is already registered"):
        register_task(dataclasses.replace(text_classification.TASK, description="another"))


def test_a_new_task_registers_without_touching_the_core():
    task = dataclasses.replace(
        text_classification.TASK, name="token-demo", description="demo", training_defaults={"learning_rate": 1e-3}
    )
    register_task(task)
    try:
        assert get_task("token-demo") is task
        config = parse_config(["--task", "token-demo", "--model", "m"])
        assert config.training.learning_rate == 1e-3  # its own defaults reach the Trainer
    finally:
        registry.TASKS.unregister("token-demo")


def write_yaml(path, content: dict):
    path.write_text(yaml.safe_dump(content), encoding="utf-8")
    return str(path)


def test_precedence_defaults_task_yaml_cli(tmp_path):
    plain = parse_config(["--model", "m", "--output_dir", str(tmp_path / "o")])
    assert plain.training.learning_rate == text_classification.TASK.training_defaults["learning_rate"]
    assert plain.training.eval_strategy.value == BASE_TRAINING_DEFAULTS["eval_strategy"]
    assert plain.training.metric_for_best_model == "f1_macro" and plain.training.load_best_model_at_end
    recipe = write_yaml(
        tmp_path / "r.yaml", {"model": "m", "learning_rate": 1e-4, "num_train_epochs": 7, "max_length": 64}
    )
    from_yaml = parse_config(["--config", recipe])
    assert (from_yaml.training.learning_rate, from_yaml.training.num_train_epochs) == (1e-4, 7)
    assert from_yaml.task.max_length == 64
    from_cli = parse_config(["--config", recipe, "--learning_rate", "3e-5", "--max_length", "32"])
    assert (from_cli.training.learning_rate, from_cli.training.num_train_epochs) == (3e-5, 7)
    assert from_cli.task.max_length == 32


def test_sections_are_flattened(tmp_path):
    recipe = write_yaml(
        tmp_path / "r.yaml",
        {
            "task": "text-classification",
            "model": {"model": "m", "revision": "v1"},
            "data": {"train_file": "t.csv", "text_column": "review"},
            "training": {"learning_rate": 2e-5, "bf16": False},
            "transfer": {"strategy": "linear_probe"},
        },
    )
    config = parse_config(["--config", recipe])
    assert (config.model.model, config.model.revision) == ("m", "v1")
    assert (config.data.train_file, config.task.text_column) == ("t.csv", "review")
    assert config.transfer.strategy == "linear_probe" and config.training.learning_rate == 2e-5


def test_unknown_yaml_option_is_named(tmp_path):
    recipe = write_yaml(tmp_path / "r.yaml", {"model": "m", "learnin_rate": 1e-4})
    with pytest.raises(ConfigError, match="unknown option 'learnin_rate' \\(did you mean 'learning_rate'\\?\\)"):
        parse_config(["--config", recipe])


def test_option_set_twice_across_sections(tmp_path):
    recipe = write_yaml(tmp_path / "r.yaml", {"learning_rate": 1e-4, "training": {"learning_rate": 2e-5}})
    with pytest.raises(ConfigError, match="option 'learning_rate' is set twice"):
        load_recipe(recipe)


def test_unknown_strategy_lists_choices():
    with pytest.raises(StrategyError, match="unknown strategy 'freeze'; valid strategies: auto, full, linear_probe"):
        parse_config(["--model", "m", "--strategy", "freeze"])


def test_missing_recipe_file(tmp_path):
    with pytest.raises(ConfigError, match="recipe file not found"):
        parse_config(["--config", str(tmp_path / "none.yaml")])


def test_resolved_config_round_trips(tmp_path):
    recipe = write_yaml(
        tmp_path / "r.yaml",
        {
            "model": "m",
            "train_file": "t.csv",
            "learning_rate": 1e-4,
            "class_names": ["neg", "pos"],
            "output_dir": str(tmp_path / "o"),
        },
    )
    config = parse_config(["--config", recipe, "--seed", "3"])
    saved = tmp_path / "resolved.yaml"
    config.save(saved)
    assert "hub_token" not in saved.read_text()
    again = parse_config(["--config", str(saved)])
    assert again.to_dict() == config.to_dict()
    assert isinstance(again, RunConfig) and again.training.seed == 3


def test_hub_token_refused_in_recipes_and_flags(tmp_path):
    """Tokens come from HF_TOKEN or `hf auth login` only: a recipe or a flag would leak them into files."""
    recipe = write_yaml(tmp_path / "r.yaml", {"model": "m", "train_file": "t.csv", "hub_token": "hf_secret"})
    for argv in (
        ["--config", recipe],
        ["--model", "m", "--hub_token", "hf_secret"],
        ["--model", "m", "--hub_token=hf_secret"],
    ):
        with pytest.raises(ConfigError, match="HF_TOKEN"):
            parse_config(argv)


def test_checkpoint_suggestions_apply_only_where_the_user_chose_nothing(tmp_path):
    from transformers import BertConfig

    small, large = BertConfig(hidden_size=384), BertConfig(hidden_size=1024)
    suggest = text_classification.suggest_training_args
    assert suggest(small) == {"learning_rate": 1e-4} and suggest(large) == {"learning_rate": 2e-5}

    config = parse_config(["--model", "m"])
    assert config.apply_suggestions(suggest(small)) == {"learning_rate": 1e-4}
    assert config.training.learning_rate == 1e-4
    chosen = parse_config(["--model", "m", "--learning_rate", "3e-5"])
    assert chosen.apply_suggestions(suggest(small)) == {} and chosen.training.learning_rate == 3e-5
    recipe = write_yaml(tmp_path / "r.yaml", {"model": "m", "learning_rate": 7e-5})
    from_yaml = parse_config(["--config", recipe])
    assert from_yaml.apply_suggestions(suggest(small)) == {} and from_yaml.training.learning_rate == 7e-5
    assert {"model", "learning_rate"} <= from_yaml.explicit
