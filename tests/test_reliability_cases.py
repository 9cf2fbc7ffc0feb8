"""The cases of the reliability probe behind the mechanisms (issue "Reliability by construction"), each as a user meets
it, through the command line and Python where both apply: one line and exit 2 (``HftransferError`` in Python),
before any long work, and no file of the user's changed. The mechanisms themselves are property-tested in
tests/unit/config/test_limits.py, tests/unit/files/test_readers.py and tests/unit/files/test_output_policy.py."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, make_class_folder, subprocess_env, tiny_run_flags
from test_trust import _malicious_pickle, one_line_error

import hftransfer
import hftransfer.cli.main as cli
from hftransfer.errors import HftransferError, run_reporting_user_errors


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def users_folder(path: Path) -> Path:
    path.mkdir()
    (path / "README.md").write_text("my own notes on this project")
    (path / "config.json").write_text('{"mine": true}')
    (path / "notes.txt").write_text("keep")
    return path


def copy_run(text_run: Path, target: Path, **config_changes) -> Path:
    shutil.copytree(text_run, target)
    if config_changes:
        config = json.loads((target / "config.json").read_text())
        config.update(config_changes)
        (target / "config.json").write_text(json.dumps(config))
    return target


# --- high: data loss or a silently wrong answer ---------------------------------------------------------------------


def test_overwrite_never_replaces_files_hftransfer_did_not_write(tiny_bert, files, text_run, tmp_path, capsys):
    folder = users_folder(tmp_path / "mine")
    before = snapshot(folder)
    flags = [*tiny_run_flags(tiny_bert, folder, **files), "--overwrite_output_dir", "true"]
    one_line_error(capsys, cli.main(["train", *flags]), "README.md, config.json", "hftransfer did not write")
    with pytest.raises(HftransferError, match="README.md, config.json"):
        hftransfer.finetune(
            model=str(tiny_bert), train_file=str(files["train"]), output_dir=str(folder), overwrite_output_dir=True
        )
    export_to = users_folder(tmp_path / "export-here")
    exported_before = snapshot(export_to)
    argv = ["export", str(text_run), "--output", str(export_to), "--overwrite"]
    one_line_error(capsys, cli.main(argv), "config.json", "hftransfer did not write")
    with pytest.raises(HftransferError, match="config.json"):
        hftransfer.export(text_run, output=export_to, overwrite=True)
    assert snapshot(folder) == before and snapshot(export_to) == exported_before


def test_an_output_is_never_an_input_of_the_same_command(text_run, tiny_bert, files, tmp_path, capsys):
    teacher = copy_run(text_run, tmp_path / "teacher")
    before = snapshot(teacher)
    for out in (teacher, teacher / "student"):
        argv = ["distill", str(teacher), "--output_dir", str(out), "--overwrite_output_dir", "true"]
        one_line_error(capsys, cli.main(argv), "the teacher run", "which this command reads")
        with pytest.raises(HftransferError, match="the teacher run"):
            hftransfer.distill(teacher, output_dir=str(out), overwrite_output_dir=True)
    assert snapshot(teacher) == before
    one_line_error(
        capsys, cli.main(["export", str(teacher), "--output", str(teacher), "--overwrite"]), "the same path as the run"
    )
    one_line_error(capsys, cli.main(["train", *tiny_run_flags(tiny_bert, tiny_bert / "out", **files)]), "model")
    texts = tmp_path / "texts.csv"
    texts.write_text("text\na good film\n")
    argv = ["predict", str(teacher), "--csv", str(texts), "--output", str(texts), "--overwrite"]
    one_line_error(capsys, cli.main(argv), "--output", "the same path as --csv")
    assert texts.read_text() == "text\na good film\n" and snapshot(teacher) == before


def test_a_run_written_into_its_own_photo_folder_is_refused(tiny_vit, tmp_path, capsys):
    photos = make_class_folder(tmp_path / "photos", per_class=4)
    before = snapshot(photos)
    flags = ["--task", "image-classification", "--model", str(tiny_vit), "--data_dir", str(photos)]
    flags += ["--output_dir", str(photos / "run"), "--overwrite_output_dir", "true", "--max_steps", "1"]
    one_line_error(capsys, cli.main(["train", *flags]), "output_dir", "is inside data_dir")
    assert snapshot(photos) == before


@pytest.mark.parametrize(
    "maps",
    [
        {"id2label": {"0": "pos", "1": "pos"}, "label2id": {"pos": 1}},
        {"id2label": ["negative", "positive"]},
        {"id2label": {"0": "negative", "2": "positive"}},
        {"id2label": {"0": "negative", "1": "positive"}, "label2id": {"negative": 1, "positive": 0}},
    ],
    ids=["two-ids-one-name", "a-list", "a-gap", "label2id-not-the-inverse"],
)
def test_malformed_label_maps_are_refused_wherever_a_run_is_opened(text_run, tmp_path, capsys, maps):
    run = copy_run(text_run, tmp_path / "run", **maps)
    for argv in (["predict", str(run), "a good film"], ["eval", str(run)], ["export", str(run)]):
        one_line_error(capsys, cli.main(argv), "config.json", "id2label" if "label2id" not in maps else "label")
    for call in (
        lambda: hftransfer.predict(run, ["a good film"]),
        lambda: hftransfer.evaluate(run),
        lambda: hftransfer.export(run),
    ):
        with pytest.raises(HftransferError, match="config.json"):
            call()


def test_a_text_model_refuses_inputs_of_another_kind(text_run, tmp_path, capsys):
    photo = tmp_path / "cat.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0 not a text")
    for item, said in ((str(photo), "is a .jpg file"), (str(tmp_path), "is a folder")):
        one_line_error(capsys, cli.main(["predict", str(text_run), item]), said, "classifies texts", "--text_file")
        with pytest.raises(HftransferError, match="classifies texts"):
            hftransfer.predict(text_run, [item])
    assert hftransfer.predict(text_run, ["notes.txt"])[0].input == "notes.txt"  # a text that is no existing file


# --- medium: files read, through every command that reads them ------------------------------------------------------


@pytest.mark.parametrize("cut", [0, 10, -100], ids=["empty", "header-cut", "data-cut"])
def test_cut_short_weights_are_refused_by_every_command(text_run, tiny_bert, files, tmp_path, capsys, cut):
    run = copy_run(text_run, tmp_path / "run")
    whole = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(whole[:cut] if cut >= 0 else whole[:cut])
    for argv in (["predict", str(run), "a good film"], ["eval", str(run)], ["export", str(run)]):
        one_line_error(capsys, cli.main(argv), "model.safetensors", "save or copy the model again")
    with pytest.raises(HftransferError, match="model.safetensors"):
        hftransfer.predict(run, ["a good film"])
    backbone = copy_run(tiny_bert, tmp_path / "backbone")
    (backbone / "model.safetensors").write_bytes(b"")
    flags = tiny_run_flags(backbone, tmp_path / "out", **files)
    one_line_error(capsys, cli.main(["train", *flags]), "model.safetensors")


def test_a_corrupt_onnx_export_is_refused(text_run, tmp_path, capsys):
    run = copy_run(text_run, tmp_path / "run")
    (run / "onnx").mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "hftransfer_config.yaml"):
        shutil.copy2(run / name, run / "onnx" / name)
    (run / "onnx" / "model.onnx").write_bytes(b"\x08\x07 not protobuf at all" * 10)
    one_line_error(capsys, cli.main(["predict", str(run), "--onnx", "a good film"]), "model.onnx", "export it again")
    one_line_error(capsys, cli.main(["eval", str(run), "--onnx"]), "model.onnx")
    with pytest.raises(HftransferError, match="model.onnx"):
        hftransfer.predict(run, ["a good film"], onnx=True)


def test_text_lists_that_are_no_text_say_so_and_name_their_flag(text_run, tiny_bert, files, tmp_path, capsys):
    binary = tmp_path / "exclude.txt"
    binary.write_bytes(b"\x00\x01\x02\xff" * 20)
    flags = [*tiny_run_flags(tiny_bert, tmp_path / "out", **files), "--exclude_file", str(binary)]
    one_line_error(capsys, cli.main(["train", *flags]), "exclude_file", "binary file")
    one_line_error(capsys, cli.main(["predict", str(text_run), "--text_file", "/dev/null"]), "not a regular file")
    one_line_error(capsys, cli.main(["predict", str(text_run), "--text_file", str(tmp_path)]), "is a folder")
    argv = [
        "distill",
        str(text_run),
        "--unlabeled_file",
        str(tmp_path / "none.txt"),
        "--output_dir",
        str(tmp_path / "s"),
    ]
    line = one_line_error(capsys, cli.main(argv), "--unlabeled_file", "not found")
    assert "text_file" not in line.replace("--unlabeled_file", "")


def test_a_pickled_backbone_is_refused_by_audit_and_never_run(tiny_bert, files, tmp_path, capsys):
    backbone, marker = copy_run(tiny_bert, tmp_path / "pickled"), tmp_path / "PWNED"
    (backbone / "model.safetensors").unlink()
    _malicious_pickle(backbone / "pytorch_model.bin", marker)
    argv = ["audit", "--model", str(backbone), "--train_file", str(files["train"]), "--report_dir", str(tmp_path / "a")]
    one_line_error(capsys, cli.main(argv), "pickle", "refused")
    assert not marker.exists()


@pytest.mark.e2e
def test_a_poisoned_checkpoint_is_refused_on_resume(tiny_bert, files, tmp_path, capsys):
    out, marker = tmp_path / "out", tmp_path / "PWNED"
    flags = [
        *tiny_run_flags(tiny_bert, out, **files),
        "--max_steps",
        "4",
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
    ]
    assert cli.main(["train", *flags]) == 0
    checkpoint = out / "checkpoint-2"
    _malicious_pickle(checkpoint / "optimizer.pt", marker)
    one_line_error(capsys, cli.main(["train", *flags, "--resume", str(checkpoint)]), "optimizer.pt", "refused")
    assert not marker.exists()


# --- the file system ------------------------------------------------------------------------------------------------


def test_unusable_output_paths_are_refused_before_any_work(tiny_bert, files, text_run, tmp_path, capsys):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    cases = {
        tmp_path / "loop": "symbolic link loop",
        tmp_path / "dangling": "which does not exist",
        tmp_path / ("x" * 300): "over this file system's limit",
    }
    for out, said in cases.items():
        one_line_error(capsys, cli.main(["train", *tiny_run_flags(tiny_bert, out, **files)]), "output_dir", said)
    audit = ["audit", "--model", str(tiny_bert), "--train_file", str(files["train"])]
    argv = [*audit, "--report_dir", str(tmp_path / "a"), "--fix_suggestions", str(tmp_path)]
    one_line_error(capsys, cli.main(argv), "--fix_suggestions", "is a folder")
    assert not (tmp_path / "a").exists()  # refused before the report was written


@pytest.mark.e2e
def test_a_full_disk_during_the_final_save_leaves_nothing_that_passes_for_a_run(
    tiny_bert, files, tmp_path, monkeypatch
):
    import hftransfer.training.outputs as outputs

    def disk_full(folder, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(folder) / "eval_report.json"))

    monkeypatch.setattr(outputs, "save_eval_outputs", disk_full)
    out = tmp_path / "out"
    with pytest.raises(HftransferError, match="No space left on device.*nothing was published"):
        hftransfer.finetune(model=str(tiny_bert), train_file=str(files["train"]), output_dir=str(out), max_steps=2)
    assert not (out / "config.json").exists() and not (out / "model.safetensors").exists()
    assert not (out / ".model.partial").exists()
    with pytest.raises(HftransferError, match="not a model directory"):
        hftransfer.predict(out, ["a good film"])


# --- values ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("atol", ["nan", "inf", "-1", "0"])
def test_export_tolerances_are_refused_before_the_export(text_run, tmp_path, capsys, atol):
    run = copy_run(text_run, tmp_path / "run")
    one_line_error(capsys, cli.main(["export", str(run), f"--atol={atol}"]), "atol")
    with pytest.raises(HftransferError, match="atol"):
        hftransfer.export(run, atol=float(atol))
    assert not (run / "onnx").exists()


def test_predict_options_are_one_definition_for_the_cli_and_the_api():
    import inspect

    from hftransfer.config.commands import PredictOptions

    keywords = inspect.signature(hftransfer.predict).parameters
    assert keywords["top_k"].default == PredictOptions.top_k == 3
    assert keywords["batch_size"].default == PredictOptions.batch_size


# --- the last resort ------------------------------------------------------------------------------------------------


def _broken(argv):
    raise RuntimeError("an unforeseen state")


def test_an_unexpected_exception_is_one_line_and_a_crash_report(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    assert run_reporting_user_errors(_broken, ["train", "x"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "internal error: RuntimeError: an unforeseen state" in err and "HFTRANSFER_DEBUG=1" in err
    report = next(tmp_path.glob("hftransfer-crash-*.txt"))
    assert "Traceback" in report.read_text() and "hftransfer train x" in report.read_text()
    monkeypatch.setenv("HFTRANSFER_DEBUG", "1")
    assert run_reporting_user_errors(_broken, []) == 1
    assert "Traceback" in capsys.readouterr().err


def test_a_system_error_the_user_can_fix_is_one_line_naming_the_file(capsys):
    def full(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/run/model.safetensors")

    assert run_reporting_user_errors(full, []) == 2
    assert capsys.readouterr().err.strip() == (
        "hftransfer: error: No space left on device: '/data/run/model.safetensors'"
    )


@pytest.mark.e2e
def test_the_installed_command_reports_an_internal_error_in_one_line(tmp_path):
    """Through a real process: an exception escaping a command's code is one line, exit 1, with its crash report."""
    code = (
        "import sys, hftransfer.cli.main as m; m.COMMANDS['tasks'] = (lambda a: 1 / 0, ''); sys.exit(m.main(['tasks']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**subprocess_env(), "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "internal error: ZeroDivisionError" in done.stderr
    assert list(tmp_path.glob("hftransfer-crash-*.txt"))


# --- logs -----------------------------------------------------------------------------------------------------------


def test_a_run_repeated_from_its_saved_config_warns_of_nothing(text_run, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="hftransfer"):
        cli.main(["train", str(text_run / "hftransfer_config.yaml"), "--output_dir", str(tmp_path / "o"), "--dry_run"])
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name.startswith("hftransfer")]
    assert warned == []


def test_each_default_is_logged_once_with_the_value_the_run_uses(tiny_bert, files, tmp_path, caplog):
    flags = [a for a in tiny_run_flags(tiny_bert, tmp_path / "o", **files)]
    at = flags.index("--num_train_epochs")
    del flags[at : at + 2]  # the horizon chooses the epochs
    with caplog.at_level("INFO", logger="hftransfer"):
        assert cli.main(["train", *flags, "--dry_run"]) == 0
    epochs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("num_train_epochs:")]
    assert len(epochs) <= 1, epochs


def test_transformers_false_warnings_are_dropped(caplog):
    from transformers.utils import logging as transformers_logging

    from hftransfer.engine.progress import drop_misleading_warnings

    drop_misleading_warnings()
    transformers_logging.enable_propagation()
    try:
        with caplog.at_level("WARNING"):
            transformers_logging.get_logger("transformers.trainer_utils").warning(
                "mtime may not be reliable on this filesystem, falling back to numerical ordering"
            )
            transformers_logging.get_logger("transformers.models.auto.image_processing_auto").warning(
                "Requested torchvision backend is not available. Falling back to pil backend."
            )
            transformers_logging.get_logger("transformers.trainer_utils").warning("a real warning")
    finally:
        transformers_logging.disable_propagation()
    shown = {r.getMessage() for r in caplog.records}
    assert shown == {"a real warning"}, shown


# --- a second probe, new cases of the same families ------------------------------------------------------------------


def test_new_cases_of_the_same_families_are_one_line(text_run, tiny_bert, files, tmp_path, capsys):
    run = copy_run(text_run, tmp_path / "run")
    saved = run / "hftransfer_config.yaml"
    saved.write_text(saved.read_text().replace("seed: 42", "seed: -5"))
    bad_recipe = tmp_path / "bad.yaml"
    bad_recipe.write_text("a: [1\n")
    train = ["train", "--model", str(tiny_bert), "--train_file", str(files["train"])]
    cases = [
        (["predict", str(text_run), ""], ("input 1 is an empty text",)),
        ([*train, "--output_dir", ""], ("output_dir is empty",)),
        (["eval", str(run)], ("hftransfer_config.yaml", "seed must be in")),
        (["train", str(bad_recipe)], ("not valid YAML at line 2",)),
        (["predict", str(text_run), "a film", "--batch_size", "0"], ("batch_size must be at least 1",)),
        (["eval", str(text_run), "--max_samples", "-3"], ("max_samples must be at least 1",)),
        (["distill", str(text_run), "--student_layers", "0"], ("student_layers must be at least 1",)),
        (["export", str(text_run), "--output", "/dev/null"], ("is not a folder",)),
        ([*train, "--validation_fraction", "2", "--output_dir", str(tmp_path / "o")], ("validation_fraction",)),
    ]
    for argv, fragments in cases:
        one_line_error(capsys, cli.main(argv), *fragments)


def test_an_accelerate_config_that_is_no_mapping_is_refused(tiny_bert, files, tmp_path, capsys):
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    for config, said in (("/etc/passwd", "not a mapping"), (str(listed), "holds a YAML list")):
        flags = [*tiny_run_flags(tiny_bert, tmp_path / "o", **files), "--accelerate_config", config]
        one_line_error(capsys, cli.main(["train", *flags]), "--accelerate_config", said)


def test_a_task_of_the_wrong_kind_is_refused_in_python():
    with pytest.raises(HftransferError, match="task takes a string, got dict"):
        hftransfer.finetune(task={"name": "text-classification"}, model="m", train_file="t.csv")


def test_texts_from_csv_and_tsv_files_read_once_and_whole(text_run, tmp_path):
    table = tmp_path / "texts.csv"
    table.write_text('\ufefftext,other\n"a good, long\nfilm",x\na bad film,y\n', encoding="utf-8")
    tabbed = tmp_path / "texts.tsv"
    tabbed.write_text("sentence\tother\na good film\tx\n", encoding="utf-8")
    from_csv = hftransfer.predict(text_run, [], csv=str(table))
    assert [p.input for p in from_csv] == ["a good, long\nfilm", "a bad film"]  # BOM dropped, quoted newline kept
    assert [p.input for p in hftransfer.predict(text_run, [], csv=str(tabbed))] == ["a good film"]
