"""Nothing the user had is lost, and no value becomes a flag: each case as a user met it (issue 33)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, make_image, sentiment_rows, subprocess_env, tiny_run_flags, write_rows
from test_trust import evil_folder, one_line_error

import hftransfer
import hftransfer.cli.main as cli
from hftransfer.config.options import ConfigError
from hftransfer.files.written import WRITTEN_RECORD
from hftransfer.training.recipe import main

HFTRANSFER = str(Path(sys.executable).parent / "hftransfer")


def listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


# --- eval writes its report and nothing else -------------------------------------------------------------------


@pytest.mark.e2e
def test_eval_into_the_run_folder_is_refused_and_the_run_stays_whole(text_run, files, capsys):
    before = listing(text_run)
    code = cli.main(
        ["eval", str(text_run), "--data", str(files["validation"]), "--output_dir", str(text_run), "--overwrite"]
    )
    one_line_error(capsys, code, "is the same path as the run", "choose an output elsewhere")
    assert listing(text_run) == before
    assert cli.main(["predict", str(text_run), "a great film"]) == 0  # still a model


@pytest.mark.e2e
def test_eval_overwrite_replaces_its_report_and_keeps_the_users_files(text_run, files, tmp_path, capsys):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "q3.txt").write_text("my notes")
    (reports / "old").mkdir()
    (reports / "old" / "figure.png").write_bytes(b"png")
    assert cli.main(["eval", str(text_run), "--data", str(files["validation"]), "--output_dir", str(reports)]) == 0
    assert (reports / "eval_report.json").is_file() and (reports / "confusion_matrix_dev.png").is_file()
    code = cli.main(["eval", str(text_run), "--data", str(files["validation"]), "--output_dir", str(reports)])
    one_line_error(
        capsys, code, "already holds an evaluation (eval_report.json, confusion_matrix_dev.png)", "--overwrite"
    )
    (reports / "eval_report.json").write_text("{}")
    assert (
        cli.main(
            ["eval", str(text_run), "--data", str(files["validation"]), "--output_dir", str(reports), "--overwrite"]
        )
        == 0
    )
    assert json.loads((reports / "eval_report.json").read_text())["dev"]["num_examples"] == 21  # replaced
    assert (reports / "q3.txt").read_text() == "my notes" and (reports / "old" / "figure.png").read_bytes() == b"png"
    assert sorted(p.name for p in reports.iterdir()) == [
        ".hftransfer_written.json",  # the record of what eval wrote there (hidden): only those files are replaced
        "confusion_matrix_dev.png",
        "eval_report.json",
        "old",
        "q3.txt",
    ]


# --- train --overwrite_output_dir removes only what hftransfer recorded writing ------------------------------------


@pytest.mark.e2e
def test_overwrite_keeps_folders_that_only_look_like_a_runs(tiny_bert, files, tmp_path, capsys):
    out = tmp_path / "out"
    flags = tiny_run_flags(tiny_bert, out, **files) + [
        "--save_strategy",
        "steps",
        "--save_steps",
        "1",
        "--save_total_limit",
        "1",
    ]
    main(flags + ["--max_steps", "3"])
    own = sorted(p.name for p in out.glob("checkpoint-*"))
    assert own and all(name in json.loads((out / WRITTEN_RECORD).read_text())["written"] for name in own)
    (out / "probe").mkdir()
    (out / "probe" / "results.csv").write_text("mine")
    (out / "checkpoint-2024-notes").mkdir()
    (out / "checkpoint-2024-notes" / "plan.md").write_text("mine")

    # transformers' rotation would delete checkpoint-2024-notes (it reads as step 2024): refused before any work
    code = cli.main(["train", *flags, "--max_steps", "2", "--overwrite_output_dir", "true", "--strategy", "lp_ft"])
    one_line_error(capsys, code, "checkpoint-2024-notes", "hftransfer did not write")
    assert (out / "checkpoint-2024-notes" / "plan.md").read_text() == "mine"

    (out / "checkpoint-2024-notes").rename(tmp_path / "notes")
    # lp_ft trains a probe first (once in a folder named probe/, which it then removed with the user's files)
    assert cli.main(["train", *flags, "--max_steps", "2", "--overwrite_output_dir", "true", "--strategy", "lp_ft"]) == 0
    assert (out / "probe" / "results.csv").read_text() == "mine"
    remaining = list(out.glob("checkpoint-*"))  # the old run's own are gone: each left is the new run's
    assert remaining and all(json.loads((p / "trainer_state.json").read_text())["max_steps"] == 2 for p in remaining)
    assert not any(p.name.startswith(".hftransfer-work") for p in out.iterdir())


@pytest.mark.e2e
def test_a_second_run_into_a_folder_in_use_is_refused(tiny_bert, files, tmp_path):
    out = tmp_path / "out"
    flags = tiny_run_flags(tiny_bert, out, **files) + ["--num_train_epochs", "500"]
    first = subprocess.Popen(
        [HFTRANSFER, "train", *flags], stderr=subprocess.PIPE, text=True, env=subprocess_env(), cwd=REPO
    )
    try:
        deadline = time.monotonic() + 240
        for line in first.stderr:  # until the first run trains
            if "trainable parameters" in line or time.monotonic() > deadline:
                break
        second = subprocess.run(
            [HFTRANSFER, "train", *flags, "--overwrite_output_dir", "true"],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            cwd=REPO,
            timeout=300,
        )
    finally:
        first.kill()
        first.wait(timeout=60)
    assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr[-2000:]
    assert "is in use by another hftransfer run" in second.stderr.strip().splitlines()[-1]


def test_a_refused_run_leaves_no_folder_behind(tiny_bert, files, tmp_path, capsys):
    out = tmp_path / "new" / "out"
    one_line_error(
        capsys, cli.main(["train", *tiny_run_flags(tiny_bert, out, **files), "--text_column", "nope"]), "'nope'"
    )
    assert not out.exists()


# --- the Python API: a value stays a value -------------------------------------------------------------------------


def test_list_items_that_look_like_flags_stay_values(text_run, tiny_bert, files, tmp_path):
    """class_names=[..., "--trust_remote_code", "true"] once enabled a model folder's code; "--output_dir" moved
    the run elsewhere."""
    folder, marker = evil_folder(text_run, tmp_path)
    with pytest.raises(hftransfer.HftransferError, match="ships Python code .* only with --trust_remote_code"):
        hftransfer.finetune(
            model=str(folder),
            train_file=str(files["train"]),
            output_dir=str(tmp_path / "o"),
            strategy="full",
            class_names=["negative", "positive", "--trust_remote_code", "true"],
        )
    assert not marker.exists()
    injected = tmp_path / "INJECTED"
    with pytest.raises(hftransfer.HftransferError, match="class_names has 4 names .* '--output_dir'"):
        hftransfer.finetune(
            model=str(tiny_bert),
            train_file=str(files["train"]),
            output_dir=str(tmp_path / "o"),
            strategy="full",
            class_names=["negative", "positive", "--output_dir", str(injected)],
        )
    with pytest.raises(hftransfer.HftransferError, match="column '--overwrite_output_dir' not found"):
        hftransfer.finetune(
            model=str(tiny_bert),
            train_file=str(files["train"]),
            output_dir=str(tmp_path / "o"),
            label_column="--overwrite_output_dir",
        )
    assert not injected.exists() and not (tmp_path / "o").exists()


# --- inputs that used to train or predict garbage ------------------------------------------------------------------


def test_a_run_folder_without_its_tokenizer_is_refused(text_run, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(text_run, broken)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (broken / name).unlink()
    one_line_error(capsys, cli.main(["predict", str(broken), "a great film"]), "has no tokenizer files")
    # a backbone folder without one: transformers would build a tokenizer that knows only [CLS], [SEP] ...
    backbone = tmp_path / "backbone"
    backbone.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(text_run / name, backbone / name)
    rows = write_rows(tmp_path / "rows.csv", sentiment_rows(30, seed=5))
    code = cli.main(
        [
            "train",
            "--model",
            str(backbone),
            "--train_file",
            str(rows),
            "--output_dir",
            str(tmp_path / "o"),
            "--strategy",
            "full",
        ]
    )
    one_line_error(capsys, code, "has no vocabulary")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("label", [[1, "joy"], 1])
def test_labels_mixing_strings_and_integers_are_refused(tiny_bert, tmp_path, capsys, label):
    """JSON lines whose labels mix 1 and "joy" used to train on the quoted names '"joy"'."""
    multi = isinstance(label, list)
    rows = [
        {"text": f"text {i}", "label": (["joy"] if multi else "joy") if i % 3 else (["anger"] if multi else "anger")}
        for i in range(30)
    ]
    rows[4]["label"] = label
    path = write_rows(tmp_path / "rows.jsonl", rows)
    code = cli.main(
        [
            "train",
            "--model",
            str(tiny_bert),
            "--train_file",
            str(path),
            "--output_dir",
            str(tmp_path / "o"),
            "--strategy",
            "full",
        ]
    )
    one_line_error(capsys, code, "mixes string and integer labels (row 4" if multi else "mixes types ['int', 'str']")


def test_a_class_of_one_file_group_is_kept_in_train(tmp_path):
    """validation_groups: auto carves whole tracks; a class that is one track went to validation whole."""
    from datasets import ClassLabel, Dataset

    from hftransfer.data.labels import LabelledData, ensure_validation

    paths, labels = [], []
    for label, tracks in ((0, 6), (1, 6), (2, 1)):
        for track in range(tracks):
            for frame in range(4):
                paths.append(
                    str(make_image(tmp_path / str(label) / f"{track:05d}_{frame:05d}.png", (9, 9, 9), size=(4, 4)))
                )
                labels.append(label)
    table = Dataset.from_dict({"image": paths, "labels": labels}).cast_column("labels", ClassLabel(num_classes=3))
    for seed in range(12):  # seeds where the single-track class lands in validation are among these
        data = ensure_validation(LabelledData({"train": table}, ["a", "b", "lone"]), 0.25, seed)
        train_ids = set(data.splits["train"]["labels"])
        assert train_ids == {0, 1, 2}, (seed, data.notes)
    moved = [
        n
        for s in range(12)
        for n in ensure_validation(LabelledData({"train": table}, ["a", "b", "lone"]), 0.25, s).notes
        if "moved back to train" in n
    ]
    assert moved and "'lone'" in moved[0]


def test_a_head_of_zero_units_is_refused():
    with pytest.raises(ConfigError, match="head_hidden_sizes must be one or more layer sizes of at least 1"):
        hftransfer.finetune(model="m", train_file="t.csv", head="mlp", head_hidden_sizes=[0])
