"""The last tracebacks of the bad-input probe, and a Python API that never exits the interpreter (issue 32): each case
as a user meets it ends in one line and exit 2 (CLI) or an HftransferError (API)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import make_class_folder, sentiment_rows, tiny_run_flags, write_rows
from test_trust import _malicious_pickle, one_line_error

import hftransfer
import hftransfer.cli.main as cli


def train(tiny_bert, tmp_path, *flags: str, train_file: Path | None = None) -> int:
    train_file = train_file or write_rows(tmp_path / "rows200.csv", sentiment_rows(200, seed=3))
    return cli.main(
        [
            "train",
            "--model",
            str(tiny_bert),
            "--train_file",
            str(train_file),
            "--output_dir",
            str(tmp_path / "o"),
            "--max_steps",
            "1",
            *flags,
        ]
    )


# --- tracebacks that are now one line -------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction, carved", [("0.001", "would carve 0 of the 200"), ("0.999", "would carve 200 of")])
def test_a_validation_fraction_that_carves_nothing_or_everything(tiny_bert, tmp_path, capsys, fraction, carved):
    code = train(tiny_bert, tmp_path, "--validation_fraction", fraction, "--strategy", "full")
    one_line_error(
        capsys, code, f"validation_fraction {fraction.rstrip('0')}", carved, "use a value from 0.005 to 0.99"
    )
    assert not (tmp_path / "o").exists()


def test_auto_on_two_rows_and_on_one_image_per_class(tiny_bert, timm_weights, tmp_path, capsys):
    two = write_rows(tmp_path / "two.csv", sentiment_rows(2, seed=4))
    one_line_error(
        capsys,
        train(tiny_bert, tmp_path, train_file=two),
        "2 training examples of 2 classes are too few",
        "validation_file",
    )
    folder = make_class_folder(tmp_path / "photos", per_class=1)
    code = cli.main(
        [
            "train",
            "--task",
            "image-classification",
            "--timm_arch",
            "test_efficientnet",
            "--weights",
            str(timm_weights),
            "--data_dir",
            str(folder),
            "--output_dir",
            str(tmp_path / "o"),
        ]
    )
    one_line_error(capsys, code, "2 training examples of 2 classes are too few")


def test_a_column_or_class_named_twice(tiny_bert, tmp_path, capsys):
    rows = [{"text": f"text {i}", "sports": i % 2, "food": (i + 1) % 2} for i in range(40)]
    table = write_rows(tmp_path / "multi.csv", rows)
    code = train(tiny_bert, tmp_path, "--label_columns", "sports", "sports", "food", train_file=table)
    one_line_error(capsys, code, "label_columns names 'sports' more than once")
    code = train(tiny_bert, tmp_path, "--class_names", "negative", "positive", "negative")
    one_line_error(capsys, code, "class_names names 'negative' more than once")


def test_a_ragged_file_streamed(tiny_bert, tmp_path, capsys):
    ragged = tmp_path / "ragged.tsv"
    ragged.write_text("text\tlabel\ngood film\tpositive\nbad\tfilm\tnegative\textra\n" * 5)
    code = train(tiny_bert, tmp_path, "--streaming", "true", "--strategy", "full", train_file=ragged)
    one_line_error(capsys, code, "could not read train file", "ragged.tsv")


def test_a_backbone_whose_weights_are_a_pickle_that_runs_code(tiny_bert, files, tmp_path, capsys):
    folder, marker = tmp_path / "pickled", tmp_path / "PWNED"
    shutil.copytree(tiny_bert, folder)
    (folder / "model.safetensors").unlink()
    _malicious_pickle(folder / "pytorch_model.bin", marker)
    code = cli.main(["train", *tiny_run_flags(folder, tmp_path / "o", **files)])
    one_line_error(capsys, code, "pickle that needs code to load", "GLOBAL posix.system")
    assert not marker.exists() and not (tmp_path / "o").exists()


@pytest.mark.e2e
def test_eval_of_no_samples(text_run, files, capsys):
    code = cli.main(["eval", str(text_run), "--data", str(files["validation"]), "--max_samples", "0"])
    one_line_error(capsys, code, "max_samples must be at least 1, got 0")


# --- the Python API raises HftransferError and nothing else ----------------------------------------------------------


@pytest.mark.parametrize(
    "inputs, kwargs, fragment",
    [
        (None, {}, "inputs must be a text or path, or a list of texts or paths, got NoneType"),
        (123, {}, "got int: 123"),
        (["a film", 4], {}, "got a list holding int"),
        (["a film"], {"top_k": "3"}, "top_k must be an integer, got str '3'"),
        (["a film"], {"batch_size": 0}, "batch_size must be at least 1, got 0"),
    ],
)
def test_predict_arguments_of_the_wrong_type(text_run, inputs, kwargs, fragment):
    with pytest.raises(hftransfer.HftransferError) as caught:
        hftransfer.predict(text_run, inputs, **kwargs)
    assert fragment in str(caught.value)


def test_finetune_never_exits_and_names_the_keyword(files, tmp_path):
    base = {"model": "m", "train_file": str(files["train"]), "output_dir": str(tmp_path / "o")}
    cases = {
        "head_hidden_sizes in the keyword options takes a list of integers, got {'a': 1}": {
            "head": "mlp",
            "head_hidden_sizes": {"a": 1},
        },
        "unknown option 'lerning_rate' (did you mean 'learning_rate'?)": {"lerning_rate": 1e-4},
        "learning_rate in the keyword options takes a number, got 'fast'": {"learning_rate": "fast"},
        "lr_scheduler_type in the keyword options: 'cosin' is not one of linear, cosine": {
            "lr_scheduler_type": "cosin"
        },
        "num_train_epochs in the keyword options takes a number, got True": {"num_train_epochs": True},
    }
    for fragment, extra in cases.items():
        try:
            hftransfer.finetune(**base, **extra)
        except hftransfer.HftransferError as err:  # a ValueError; SystemExit would end a notebook's cell
            assert fragment in str(err), (extra, str(err))
        else:
            pytest.fail(f"{extra} was accepted")
    assert not (tmp_path / "o").exists()


def test_a_bad_flag_is_one_line_with_a_suggestion(tiny_bert, tmp_path, capsys):
    one_line_error(
        capsys,
        train(tiny_bert, tmp_path, "--lerning_rate", "1e-4"),
        "unknown option 'lerning_rate' (did you mean 'learning_rate'?) in the command line",
    )
    one_line_error(
        capsys, train(tiny_bert, tmp_path, "--learning_rate", "fast"), "--learning_rate", "invalid float value: 'fast'"
    )


# --- eval says what it read ----------------------------------------------------------------------------------------


def test_eval_names_the_data_whose_labels_the_model_does_not_know(text_run, tmp_path, capsys):
    new = write_rows(
        tmp_path / "new.jsonl", [{"text": "a film", "label": "sarcastic"}, {"text": "b", "label": "positive"}]
    )
    code = cli.main(["eval", str(text_run), "--data", str(new)])
    one_line_error(
        capsys,
        code,
        f"evaluation data {str(new)!r}: labels the model does not know: 'sarcastic'; "
        "the model's labels: negative, positive",
    )


def test_eval_of_a_file_refuses_a_split(text_run, files, capsys):
    code = cli.main(["eval", str(text_run), "--data", str(files["validation"]), "--split", "nope"])
    one_line_error(capsys, code, "--split 'nope'", "is one file, with no splits")


def test_eval_says_integer_labels_were_read_as_the_models_ids(text_run, tmp_path, caplog):
    rows = [dict(row, label=int(row["label"] == "positive")) for row in sentiment_rows(20, seed=6)]
    ids = write_rows(tmp_path / "ids.csv", rows)
    report = hftransfer.evaluate(text_run, str(ids), output_dir=str(tmp_path / "report"))
    note = (
        "label column 'label' holds integers and the model's labels are names: read as the model's label ids "
        "(0 = negative, 1 = positive)"
    )
    assert note in report["source"]["notes"] and note in caplog.text
    saved = json.loads((tmp_path / "report" / "eval_report.json").read_text())
    assert note in next(iter(saved.values()))["source"]["notes"]


def test_a_model_folder_without_labels(text_run, tmp_path, capsys):
    folder = tmp_path / "unlabelled"
    shutil.copytree(text_run, folder)
    config = json.loads((folder / "config.json").read_text())
    for key in ("id2label", "label2id"):
        config.pop(key, None)
    (folder / "config.json").write_text(json.dumps(config))
    one_line_error(capsys, cli.main(["predict", str(folder), "a film"]), "config.json' has no labels (id2label)")
