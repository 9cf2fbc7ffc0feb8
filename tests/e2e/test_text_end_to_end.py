"""Whole runs of the text recipe on a tiny BERT: outputs, pipeline round trip, entry points, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO, tiny_run_flags, write_rows
from transformers import AutoConfig, AutoTokenizer, pipeline

from hftransfer.backbones.checkpoints import ModelSourceError
from hftransfer.cli.main import main as main_command
from hftransfer.config.recipes import CONFIG_FILE
from hftransfer.evaluation.report import REPORT_FILE
from hftransfer.tasks.text_classification import build_collator, load_data, prepare_datasets
from hftransfer.training.output_dir import OutputDirError
from hftransfer.training.parse import parse_config
from hftransfer.training.recipe import main

pytestmark = pytest.mark.e2e  # end to end: trains or starts processes, seconds each

VENV_BIN = os.path.dirname(sys.executable)


def test_full_run_writes_a_pipeline_ready_model(tiny_bert, text_files, tmp_path):
    out = tmp_path / "out"
    main(tiny_run_flags(tiny_bert, out, **text_files))

    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        CONFIG_FILE,
        REPORT_FILE,
        "all_results.json",
        "eval_results.json",
        "test_results.json",
    ):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    results = json.loads((out / "all_results.json").read_text())
    for key in (
        "eval_accuracy",
        "eval_f1_macro",
        "eval_f1_weighted",
        "eval_precision_macro",
        "eval_recall_weighted",
        "test_accuracy",
        "test_f1_macro",
    ):
        assert 0.0 <= results[key] <= 1.0, key
    report = json.loads((out / REPORT_FILE).read_text())
    assert set(report) == {"validation", "test"}
    assert set(report["validation"]["per_class"]) == {"negative", "positive"}
    assert sum(map(sum, report["validation"]["confusion_matrix"]["matrix"])) == 21
    assert report["validation"]["summary"]["accuracy"] == pytest.approx(results["eval_accuracy"])

    classifier = pipeline("text-classification", model=str(out), device="cpu")
    prediction = classifier("a wonderful and moving story")[0]
    assert prediction["label"] in {"negative", "positive"}

    # the saved resolved config repeats the run
    again = parse_config(["--config", str(out / CONFIG_FILE), "--output_dir", str(tmp_path / "again")])
    assert again.data.train_file == str(text_files["train"]) and again.model.model == str(tiny_bert)


def test_refuses_non_empty_output_dir_unless_overwrite(tiny_bert, text_files, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    flags = tiny_run_flags(tiny_bert, out, **text_files)
    with pytest.raises(OutputDirError, match="is not empty; choose another output_dir, pass --overwrite_output_dir"):
        main(flags)
    assert (out / "precious.txt").read_text() == "keep me" and len(list(out.iterdir())) == 1
    main(flags + ["--overwrite_output_dir"])
    assert (out / "model.safetensors").is_file()


def test_linear_probe_trains_only_the_head(tiny_bert, text_files, tmp_path):
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "out"
    main(
        tiny_run_flags(tiny_bert, out, train=text_files["train"])
        + ["--strategy", "linear_probe", "--learning_rate", "1e-2"]
    )
    before = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    after = AutoModelForSequenceClassification.from_pretrained(out)
    old, new = before.state_dict(), after.state_dict()
    backbone = [k for k in new if k.startswith("bert.")]
    assert backbone and all(torch.equal(old[k], new[k]) for k in backbone)


def test_dynamic_padding_and_derived_max_length(tiny_bert, tmp_path):
    # 297 texts of 5..24 tokens and 3 outliers of 112: the 99th percentile is 24.9, so max_length is 32
    rows = [{"text": " ".join(["word"] * (3 + i % 20)), "label": "ab"[i % 2]} for i in range(297)]
    rows += [{"text": " ".join(["word"] * 110), "label": "ab"[i % 2]} for i in range(3)]
    train, dev = write_rows(tmp_path / "t.csv", rows), write_rows(tmp_path / "d.csv", rows[:10])
    config = parse_config(
        [
            "--model",
            str(tiny_bert),
            "--train_file",
            str(train),
            "--validation_file",
            str(dev),
            "--output_dir",
            str(tmp_path / "o"),
        ]
    )
    data = load_data(config)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    model_config = AutoConfig.from_pretrained(tiny_bert)  # 128 positions: the model's limit
    prepared = prepare_datasets(config, tokenizer, data, model_config)
    longest = max(len(ids) for ids in prepared["train"]["input_ids"])
    assert longest == 32  # the outliers are truncated, the rest kept whole
    assert any("max_length: 32 tokens (derived from the training texts; evaluation up to 128)" in n for n in data.notes)
    long_dev = [{"text": " ".join(["word"] * 110), "label": "a"}, {"text": "word", "label": "b"}]
    config.data.validation_file = str(write_rows(tmp_path / "long_dev.csv", long_dev))
    evaluated = prepare_datasets(config, tokenizer, load_data(config), model_config)["validation"]
    assert max(len(ids) for ids in evaluated["input_ids"]) == 112  # evaluation texts are not cut at 32
    config.task.max_length = 16  # a chosen length applies to every split
    chosen = prepare_datasets(config, tokenizer, load_data(config), model_config)
    assert max(len(ids) for ids in chosen["validation"]["input_ids"]) == 16
    collate = build_collator(config, tokenizer)
    short = collate([prepared["train"][i] for i in range(4)])
    assert short["input_ids"].shape[1] == max(len(prepared["train"][i]["input_ids"]) for i in range(4)) < 32


def test_missing_model_path_fails_before_training(text_files, tmp_path):
    flags = tiny_run_flags(tmp_path / "no-such-model", tmp_path / "o", **text_files)
    with pytest.raises(ModelSourceError, match="model path does not exist: .*no-such-model"):
        main(flags)
    assert not (tmp_path / "o").exists()  # nothing written


def test_offline_hub_id_says_so_plainly(text_files, tmp_path):
    with pytest.raises(
        ModelSourceError,
        match="cannot fetch Hub model 'google-bert/bert-base-uncased': the Hub is unreachable \\(HF_HUB_OFFLINE=1\\)",
    ):
        main(tiny_run_flags("google-bert/bert-base-uncased", tmp_path / "o", **text_files))


def test_folder_that_is_not_a_model(text_files, tmp_path):
    with pytest.raises(ModelSourceError, match="is not a transformers model folder \\(no config.json\\)"):
        main(tiny_run_flags(tmp_path, tmp_path / "o", **text_files))


def cli(*args, timeout=300):
    return subprocess.run(
        [os.path.join(VENV_BIN, args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def test_cli_lists_tasks_and_recipes():
    tasks = cli("hftransfer", "tasks")
    assert tasks.returncode == 0 and "text-classification" in tasks.stdout
    recipes = cli("hftransfer", "recipes")
    assert recipes.returncode == 0
    assert "text_classification/minilm_sst2" in recipes.stdout and "text-classification" in recipes.stdout


def test_cli_bad_input_is_one_clear_line(tmp_path, capsys):
    # in process (the installed command's own entry point is run by test_cli_lists_tasks_and_recipes)
    argv = ["train", "--model", "m", "--train_file", str(tmp_path / "missing.csv"), "--output_dir", str(tmp_path / "o")]
    assert main_command(argv) == 2
    err = capsys.readouterr().err
    assert "hftransfer: error: " in err and "Traceback" not in err
    assert main_command(["train", "--task", "nope"]) == 2
    assert "valid tasks: text-classification, image-classification" in capsys.readouterr().err
    assert main_command(["train", "recipes/none.yaml"]) == 2
    assert "recipe not found" in capsys.readouterr().err


def test_recipe_runs_through_cli_module_and_accelerate(tiny_bert, text_files, tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        f"# tiny\nmodel: {tiny_bert}\ntrain_file: {text_files['train']}\nvalidation_file: {text_files['validation']}\n"
        "num_train_epochs: 1\nper_device_train_batch_size: 16\ndisable_tqdm: true\n",
        encoding="utf-8",
    )
    by_cli = cli("hftransfer", "train", str(recipe), "--output_dir", str(tmp_path / "a"), "--max_steps", "2")
    assert by_cli.returncode == 0, by_cli.stderr[-2000:]
    by_module = cli(
        "python",
        "-m",
        "hftransfer.train",
        "--config",
        str(recipe),
        "--output_dir",
        str(tmp_path / "b"),
        "--max_steps",
        "2",
    )
    assert by_module.returncode == 0, by_module.stderr[-2000:]
    by_accelerate = cli(
        "accelerate",
        "launch",
        "--num_processes",
        "1",
        "--cpu",
        "-m",
        "hftransfer.train",
        "--config",
        str(recipe),
        "--output_dir",
        str(tmp_path / "c"),
        "--max_steps",
        "2",
    )
    assert by_accelerate.returncode == 0, by_accelerate.stderr[-2000:]
    for name in "abc":
        assert (tmp_path / name / "model.safetensors").is_file()
        assert json.loads((tmp_path / name / "trainer_state.json").read_text())["global_step"] == 2


def test_half_precision_checkpoint_trains_with_fp32_weights(tiny_bert, text_files, tmp_path):
    from transformers import AutoModel

    half = tmp_path / "half"
    AutoModel.from_pretrained(tiny_bert, dtype=torch.float16).save_pretrained(half)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(half)
    config = parse_config(tiny_run_flags(half, tmp_path / "o", train=text_files["train"]))
    from hftransfer.tasks.text_classification import build_model

    model = build_model(config, load_data(config))
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_early_stopping_stops_when_the_metric_stalls(tiny_bert, text_files, tmp_path):
    out = tmp_path / "out"
    # a vanishing learning rate (Adam steps of about 1e-12) cannot improve macro-F1 after the first evaluation
    main(
        tiny_run_flags(tiny_bert, out, train=text_files["train"], validation=text_files["validation"])
        + ["--num_train_epochs", "10", "--learning_rate", "1e-12", "--early_stopping_patience", "2"]
    )
    state = json.loads((out / "trainer_state.json").read_text())
    evaluations = [entry for entry in state["log_history"] if "eval_f1_macro" in entry]
    assert len(evaluations) == 3 and state["epoch"] == 3  # the first, then two without improvement


@pytest.mark.parametrize("task", ["text-classification", "image-classification"])
def test_help_lists_every_option_of_the_task(task, capsys):
    with pytest.raises(SystemExit) as done:  # argparse's --help exits 0 after printing
        main_command(["train", "--task", task, "--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    options = {"text-classification": "--text_column", "image-classification": "--augmentation"}
    assert options[task] in shown and "--learning_rate" in shown and "--class_names" in shown
