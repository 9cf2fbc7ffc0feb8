"""Trust: no code runs unasked, no stale run resumes, no input is silently wrong (each case as a user meets it)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, make_class_folder, make_image, sentiment_rows, subprocess_env, tiny_run_flags, write_rows
from PIL import Image

import hftransfer.cli.main as cli
from hftransfer.backbones.checkpoints import custom_code_entries
from hftransfer.backbones.heads import MODELING_FILE
from hftransfer.data.images import to_mode
from hftransfer.training.output_dir import RUN_RECORD
from hftransfer.training.recipe import main

HFTRANSFER = str(Path(sys.executable).parent / "hftransfer")


def one_line_error(capsys, code: int, *fragments: str) -> str:
    """The command failed as a user error: exit 2, one line on stderr naming ``fragments``, no traceback."""
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("hftransfer: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# --- 1. code from a model folder runs only when asked -------------------------------------------------------------

EVIL_MODELING = """from pathlib import Path
from transformers import BertConfig, BertForSequenceClassification

Path({marker!r}).write_text("code from the model folder ran")


class EvilModel(BertForSequenceClassification):
    config_class = BertConfig
"""


def evil_folder(text_run: Path, where: Path) -> tuple[Path, Path]:
    """A copy of a finished run whose config.json names a modeling file that writes a marker when imported."""
    folder, marker = where / "evil", where / "MARKER"
    shutil.copytree(text_run, folder)
    (folder / "modeling_evil.py").write_text(EVIL_MODELING.format(marker=str(marker)), encoding="utf-8")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder, marker


@pytest.mark.e2e
def test_a_model_folder_with_code_runs_nothing_without_trust_remote_code(text_run, files, tmp_path, capsys):
    folder, marker = evil_folder(text_run, tmp_path)
    commands = {
        "predict": ["predict", str(folder), "a good film"],
        "eval": ["eval", str(folder), "--data", str(files["validation"])],
        "export": ["export", str(folder), "--output", str(tmp_path / "onnx")],
        "train": ["train", *tiny_run_flags(folder, tmp_path / "again", train=files["train"])],
    }
    for name, argv in commands.items():
        one_line_error(capsys, cli.main(argv), "ships Python code", "--trust_remote_code")
        assert not marker.exists(), f"{name} ran the folder's code"
    assert not (tmp_path / "onnx").exists() and not (tmp_path / "again").exists()
    # rank scores the other candidates and lists this one as skipped, without running its code
    rank = [
        "rank",
        "--model",
        str(text_run.parent.parent / "unused"),
        "--models",
        str(folder),
        str(text_run),
        "--train_file",
        str(files["train"]),
        "--sample_size",
        "40",
        "--report_dir",
        str(tmp_path / "rank"),
    ]
    cli.main(rank)
    report = json.loads((tmp_path / "rank" / "rank_report.json").read_text())
    skipped = {row["model"]: row["error"] for row in report["candidates"] if row["error"]}
    assert "ships Python code" in skipped[str(folder)] and not marker.exists()
    # asked for, the code runs (and here it is a working model)
    assert cli.main(["predict", str(folder), "a good film", "--trust_remote_code"]) == 0
    assert marker.read_text() == "code from the model folder ran"


def test_custom_code_is_found_in_every_file_transformers_reads_it_from(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert custom_code_entries(tmp_path) == []
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"auto_map": {"AutoTokenizer": ["tok.T", None]}}))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"auto_map": {"AutoImageProcessor": "p.P"}}))
    found = custom_code_entries(tmp_path)
    assert len(found) == 2 and found[0].startswith("tokenizer_config.json: AutoTokenizer")


@pytest.mark.e2e
def test_an_mlp_head_output_loads_without_running_its_file_and_a_changed_file_is_refused(
    tiny_bert, files, tmp_path, capsys
):
    out = tmp_path / "mlp"
    main(tiny_run_flags(tiny_bert, out, **files) + ["--head", "mlp", "--head_hidden_sizes", "16"])
    assert cli.main(["predict", str(out), "a good film", "--output", str(tmp_path / "p.json")]) == 0
    assert cli.main(["eval", str(out), "--data", str(files["validation"])]) == 0
    # hftransfer rebuilds the head itself: a changed modeling file is no longer its own, so it is refused
    marker = tmp_path / "MARKER"
    code = out / MODELING_FILE
    code.write_text(code.read_text() + f"\nopen({str(marker)!r}, 'w').write('ran')\n")
    one_line_error(capsys, cli.main(["predict", str(out), "a good film"]), "ships Python code")
    assert not marker.exists()


def _malicious_pickle(path: Path, marker: Path) -> Path:
    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"weight": Payload()}, path)
    return path


def test_pickled_weights_that_run_code_are_refused_in_one_line(text_run, files, tmp_path, capsys):
    folder, marker = tmp_path / "pickled", tmp_path / "PWNED"
    shutil.copytree(text_run, folder)
    (folder / "model.safetensors").unlink()
    _malicious_pickle(folder / "pytorch_model.bin", marker)
    one_line_error(capsys, cli.main(["predict", str(folder), "a good film"]), "pickle", "refused")
    image_flags = [
        "--task",
        "image-classification",
        "--timm_arch",
        "test_efficientnet",
        "--data_dir",
        str(make_class_folder(tmp_path / "data", 3)),
        "--output_dir",
        str(tmp_path / "o"),
    ]
    weights = _malicious_pickle(tmp_path / "evil.pth", marker)
    one_line_error(capsys, cli.main(["train", *image_flags, "--weights", str(weights)]), "pickle", "refused")
    assert not marker.exists()
    one_line_error(capsys, cli.main(["train", *image_flags, "--weights", str(files["train"])]), "not a weights file")


def test_weights_of_another_shape_are_named_not_a_traceback(timm_weights, tmp_path, capsys):
    state = torch.load(timm_weights, weights_only=True)
    state["conv_stem.weight"] = torch.zeros(8, 3, 5, 5)  # as another architecture's stem would be
    other = tmp_path / "other.pth"
    torch.save(state, other)
    code = cli.main(
        [
            "train",
            "--task",
            "image-classification",
            "--timm_arch",
            "test_efficientnet",
            "--weights",
            str(other),
            "--data_dir",
            str(make_class_folder(tmp_path / "data", 3)),
            "--output_dir",
            str(tmp_path / "o"),
        ]
    )
    one_line_error(capsys, code, "do not fit timm 'test_efficientnet'", "conv_stem.weight (8, 3, 5, 5)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; run as a user to check this")
def test_a_read_only_parent_folder_is_refused_before_training(tiny_bert, files, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code = cli.main(["train", *tiny_run_flags(tiny_bert, locked / "out", **files)])
        one_line_error(capsys, code, "cannot write into")
    finally:
        locked.chmod(0o700)


# --- 2. overwrite is a clean slate; resume continues only the same run -------------------------------------------


@pytest.mark.e2e
def test_overwrite_removes_the_old_checkpoints_and_resume_checks_the_run(tiny_bert, files, tmp_path, capsys):
    """The reported case: an overwritten run, killed, then resumed, continued the *old* run's last checkpoint."""
    out = tmp_path / "out"
    flags = tiny_run_flags(tiny_bert, out, **files) + [
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
        "--save_total_limit",
        "5",
    ]
    main(flags + ["--max_steps", "6"])  # the old run: checkpoints 2, 4, 6
    assert (out / "checkpoint-6" / RUN_RECORD).is_file()
    new_run = flags + ["--max_steps", "4", "--learning_rate", "1e-3"]
    killed = subprocess.run(
        [sys.executable, str(REPO / "tests" / "kill_at_step.py"), "3", *new_run, "--overwrite_output_dir", "true"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=REPO,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]  # the old run's are gone
    main(new_run + ["--resume"])  # continues the new run from its checkpoint-2, to its own end
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and state["max_steps"] == 4
    one_line_error(capsys, cli.main(["train", *new_run, "--resume"]), "is the end of its run (step 4 of 4)")
    # other settings: refused, naming what differs
    code = cli.main(
        ["train", *flags, "--max_steps", "4", "--learning_rate", "0.5", "--resume", str(out / "checkpoint-2")]
    )
    one_line_error(capsys, code, "belongs to a run with other settings", "learning_rate")
    # a checkpoint without hftransfer's record (another tool's, or planted) is not resumed blindly
    (out / "checkpoint-2" / RUN_RECORD).unlink()
    code = cli.main(["train", *new_run, "--resume", str(out / "checkpoint-2")])
    one_line_error(capsys, code, "has no hftransfer run record")


# --- 3. images of every mode keep their contrast -------------------------------------------------------------------


def _gradient(size=(40, 32)) -> Image.Image:
    """An 8-bit grayscale photo stand-in with the full range of values."""
    row = np.linspace(0, 255, size[0]).round().astype(np.uint8)
    return Image.fromarray(np.tile(row, (size[1], 1)))


def _variants(original: Image.Image) -> dict[str, Image.Image]:
    pixels = np.asarray(original).astype(np.int64)
    rgb = original.convert("RGB")
    return {
        "I;16 (16-bit PNG)": Image.fromarray((pixels * 257).astype(np.uint16)),
        "I (32-bit, 16-bit range)": Image.fromarray((pixels * 257).astype(np.int32)),
        "I (32-bit, 8-bit range)": Image.fromarray(pixels.astype(np.int32)),
        "F (0-1)": Image.fromarray((pixels / 255).astype(np.float32)),
        "F (0-255)": Image.fromarray(pixels.astype(np.float32)),
        "LA": original.convert("LA"),
        "P": rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=256),
        "RGBA": rgb.convert("RGBA"),
        "CMYK": rgb.convert("CMYK"),
    }


def test_every_mode_reaches_the_model_like_its_8bit_original(tmp_path):
    original = _gradient()
    expected = np.asarray(to_mode(original), dtype=np.int64)
    for name, image in _variants(original).items():
        path = tmp_path / f"{len(os.listdir(tmp_path))}.{'tiff' if image.mode in ('F', 'I', 'CMYK') else 'png'}"
        image.save(path)
        with Image.open(path) as reopened:
            got = np.asarray(to_mode(reopened), dtype=np.int64)
        assert got.shape == expected.shape, name
        assert np.abs(got - expected).max() <= 1, name  # palette and CMYK round-trips move a value by one at most
    white = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert np.asarray(to_mode(white, channels=1)).max() == 255


@pytest.mark.e2e
def test_a_16bit_png_is_predicted_like_the_8bit_one(timm_weights, tmp_path):
    data = make_class_folder(tmp_path / "data", 4)
    out = tmp_path / "run"
    main(
        [
            "--task",
            "image-classification",
            "--timm_arch",
            "test_efficientnet",
            "--weights",
            str(timm_weights),
            "--data_dir",
            str(data),
            "--output_dir",
            str(out),
            "--num_train_epochs",
            "1",
            "--disable_tqdm",
            "true",
            "--validation_fraction",
            "0.25",
        ]
    )
    eight = tmp_path / "eight.png"
    _gradient((64, 48)).save(eight)
    sixteen = tmp_path / "sixteen.png"
    Image.fromarray((np.asarray(Image.open(eight)).astype(np.uint16) * 257)).save(sixteen)
    assert Image.open(sixteen).mode.startswith("I;16")
    from hftransfer.artifacts.predict import predict_inputs

    a, b = predict_inputs(out, [str(eight), str(sixteen)], top_k=2)
    assert a.labels == b.labels and a.scores == pytest.approx(b.scores, abs=1e-6)


# --- 4. a failed start leaves nothing behind ---------------------------------------------------------------------


@pytest.mark.e2e
def test_a_refused_start_writes_nothing_and_the_corrected_command_runs(tiny_bert, files, tmp_path, capsys):
    out = tmp_path / "out"
    for bad, fragment in (
        (["--learning_rate", "-1"], "learning_rate must be > 0"),
        (["--per_device_train_batch_size", "0"], "per_device_train_batch_size must be at least 1"),
        (["--max_train_samples", "0"], "max_train_samples must be at least 1"),
        (["--num_train_epochs", "0"], "num_train_epochs must be > 0"),
        (["--strategy", "lora", "--lora_target_modules", "nonexistent"], "matches no adaptable"),
    ):
        one_line_error(capsys, cli.main(["train", *tiny_run_flags(tiny_bert, out, **files), *bad]), fragment)
        assert not out.exists() or not any(out.iterdir()), bad
    assert cli.main(["train", *tiny_run_flags(tiny_bert, out, **files), "--max_steps", "1"]) == 0


# --- 5. mistakes are named, not trained on -------------------------------------------------------------------------


def _rows(labels: list[str]) -> list[dict]:
    return [dict(row, label=labels[i % len(labels)]) for i, row in enumerate(sentiment_rows(30, seed=4))]


@pytest.mark.e2e
def test_labels_that_differ_by_case_or_spaces(tiny_bert, tmp_path, capsys):
    train = write_rows(tmp_path / "train.csv", _rows(["pos", "pos ", "Pos", "neg"]))
    flags = tiny_run_flags(tiny_bert, tmp_path / "o", train=train) + ["--max_steps", "1"]
    one_line_error(
        capsys, cli.main(["train", *flags]), "differ only by letter case", "'Pos' / 'pos'", "allow_case_variant_labels"
    )
    assert cli.main(["train", *flags, "--allow_case_variant_labels", "true"]) == 0
    assert sorted(json.loads((tmp_path / "o" / "config.json").read_text())["label2id"]) == ["Pos", "neg", "pos"]


def test_column_and_class_name_mistakes(tiny_bert, files, tmp_path, capsys):
    flags = tiny_run_flags(tiny_bert, tmp_path / "o", train=files["train"])
    one_line_error(capsys, cli.main(["train", *flags, "--text_column", "label"]), "would be given its answer")
    numeric = write_rows(tmp_path / "ids.csv", [dict(r, label=i % 2) for i, r in enumerate(sentiment_rows(20))])
    code = cli.main(
        [
            "train",
            *tiny_run_flags(tiny_bert, tmp_path / "o", train=numeric),
            "--class_names",
            "negative",
            "positive",
            "neutral",
        ]
    )
    one_line_error(capsys, code, "no example of 'neutral'")


@pytest.mark.e2e
def test_na_like_words_stay_text_unless_named(tiny_bert, tmp_path, capsys):
    rows = sentiment_rows(30, seed=5)
    for row, word in zip(rows, ("NA", "None", "null", "n/a")):
        row["text"] = word
    train = write_rows(tmp_path / "train.csv", rows)
    assert cli.main(["train", *tiny_run_flags(tiny_bert, tmp_path / "o", train=train), "--max_steps", "1"]) == 0
    code = cli.main(["train", *tiny_run_flags(tiny_bert, tmp_path / "o2", train=train), "--na_values", "NA", "null"])
    one_line_error(capsys, code, "2 empty value(s) in text column 'text'")


@pytest.mark.e2e
def test_identical_validation_data_is_warned_about(tiny_bert, files, tmp_path, caplog):
    copy = tmp_path / "copy.csv"
    shutil.copy(files["train"], copy)
    main(tiny_run_flags(tiny_bert, tmp_path / "o", train=files["train"], validation=copy) + ["--max_steps", "1"])
    assert any("holds exactly the training data" in r.getMessage() for r in caplog.records)


@pytest.mark.e2e
def test_class_folders_named_like_tools_count_and_empty_ones_are_named(tmp_path, timm_weights, capsys):
    data = make_class_folder(tmp_path / "data", 3)
    for i in range(3):
        make_image(data / "__other__" / f"o{i}.png", (20, 200, 20))
    (data / "notes.txt").write_text("not an image")  # beside the classes: not a class
    (data / "red" / "README.md").write_text("not an image")
    flags = [
        "train",
        "--task",
        "image-classification",
        "--timm_arch",
        "test_efficientnet",
        "--weights",
        str(timm_weights),
        "--data_dir",
        str(data),
        "--max_steps",
        "1",
        "--validation_fraction",
        "0.34",
    ]
    assert cli.main([*flags, "--output_dir", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o" / "config.json").read_text())["label_names"] == ["__other__", "blue", "red"]
    (data / "green").mkdir()
    (data / "green" / "photo.heic").write_bytes(b"not decodable here")
    one_line_error(capsys, cli.main([*flags, "--output_dir", str(tmp_path / "o2")]), "no image file", "'green'")


def test_predict_without_inputs_and_into_a_missing_folder(text_run, tmp_path, capsys):
    one_line_error(capsys, cli.main(["predict", str(text_run)]), "nothing to predict")
    code = cli.main(["predict", str(text_run), "a film", "--output", str(tmp_path / "missing" / "p.csv")])
    one_line_error(capsys, code, "does not exist")


# --- 6. one line for every user mistake, whatever the entry point -----------------------------------------------------


def test_text_files_that_cannot_be_parsed_name_the_file_and_line(tiny_bert, tmp_path, capsys):
    ragged = tmp_path / "ragged.tsv"
    ragged.write_text("text\tlabel\na good film\tpos\na bad\tfilm\tneg\nfine\tpos\n", encoding="utf-8")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    one_line_error(
        capsys, cli.main(["train", *tiny_run_flags(tiny_bert, tmp_path / "o", train=ragged)]), "ragged.tsv", "line 3"
    )
    one_line_error(
        capsys, cli.main(["train", *tiny_run_flags(tiny_bert, tmp_path / "o", train=empty)]), "is empty (0 bytes)"
    )
    one_line_error(
        capsys, cli.main(["train", *tiny_run_flags(tiny_bert, tmp_path / "o", train=tmp_path)]), "is a folder"
    )


@pytest.mark.e2e
def test_output_dir_mistakes_through_the_real_command(tiny_bert, files, tmp_path):
    """OutputDirError used to be a traceback from `hftransfer train` (its re-executed module's own class)."""
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep me")
    (tmp_path / "a-file").write_text("x")
    cases = {"full": ("is not empty", "--resume"), "a-file": ("is not a folder",), "a-file/sub": ("cannot write into",)}
    for name, fragments in cases.items():
        done = subprocess.run(
            [HFTRANSFER, "train", *tiny_run_flags(tiny_bert, tmp_path / name, **files)],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            cwd=REPO,
            timeout=300,
        )
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
        for fragment in fragments:
            assert fragment in done.stderr.strip().splitlines()[-1]
    assert (tmp_path / "full" / "mine.txt").read_text() == "keep me"


@pytest.mark.e2e
def test_ctrl_c_stops_training_with_one_line(tiny_bert, files, tmp_path):
    flags = tiny_run_flags(tiny_bert, tmp_path / "o", **files) + ["--num_train_epochs", "500"]
    handler = signal.getsignal(signal.SIGINT)
    process = subprocess.Popen(
        [HFTRANSFER, "train", *flags],
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(PYTHONUNBUFFERED="1"),
        cwd=REPO,
        # Ctrl-C as a terminal delivers it: the child starts with the default disposition, whatever the test
        # process inherited or set (an ignored SIGINT is inherited across exec and Python then keeps ignoring it)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen = []
    deadline = time.monotonic() + 240
    for line in process.stderr:  # wait until training runs
        seen.append(line)
        if "trainable parameters" in line or time.monotonic() > deadline:
            break
    time.sleep(2)
    process.send_signal(signal.SIGINT)
    rest = process.communicate(timeout=120)[1]
    assert process.returncode == 130, f"returncode {process.returncode}, parent's SIGINT handler {handler}\n" + (
        "".join(seen)[-2000:] + rest[-2000:]
    )
    assert rest.strip().splitlines()[-1] == "hftransfer: interrupted" and "Traceback" not in rest


@pytest.mark.e2e
def test_export_overwrite_replaces_only_its_own_files(text_run, tmp_path):
    target = tmp_path / "export"
    target.mkdir()
    (target / "notes.md").write_text("mine")
    assert cli.main(["export", str(text_run), "--output", str(target)]) == 2  # not empty: must be asked
    assert cli.main(["export", str(text_run), "--output", str(target), "--overwrite"]) == 0
    assert (target / "notes.md").read_text() == "mine" and (target / "model.onnx").is_file()
