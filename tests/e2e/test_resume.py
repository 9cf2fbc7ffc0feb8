"""Runs that survive a kill: checkpoints, --resume, and a final save that never half-replaces a model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, make_config, sentiment_rows, subprocess_env, tiny_run_flags, write_rows
from safetensors.torch import load_file
from transformers import pipeline

from hftransfer.files.atomic import publish_directory, staging_dir
from hftransfer.files.written import record_entries
from hftransfer.training.output_dir import OutputDirError, resolve_checkpoint
from hftransfer.training.parse import parse_config
from hftransfer.training.recipe import run

pytestmark = pytest.mark.e2e  # end to end: trains or starts processes, seconds each

KILL_SCRIPT = REPO / "tests" / "kill_at_step.py"


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    return {
        "train": write_rows(tmp_path / "train.csv", sentiment_rows(64, seed=1)),
        "validation": write_rows(tmp_path / "dev.csv", sentiment_rows(21, seed=2)),
    }


def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tiny_bert, files, tmp_path):
    # 8 steps per epoch, a checkpoint every 4 (mid-epoch at 12), killed at step 14 of 32: resuming restores
    # model, optimizer, scheduler, RNG and the position in epoch 2's shuffled order from checkpoint-12.
    flags = tiny_run_flags(tiny_bert, tmp_path / "unused", train=files["train"], validation=files["validation"])
    flags = flags[: flags.index("--output_dir")] + flags[flags.index("--output_dir") + 2 :]
    flags += [
        "--num_train_epochs",
        "4",
        "--per_device_train_batch_size",
        "8",
        "--learning_rate",
        "5e-3",
        "--save_strategy",
        "steps",
        "--save_steps",
        "4",
        "--load_best_model_at_end",
        "false",
    ]
    uninterrupted, killed = tmp_path / "uninterrupted", tmp_path / "killed"

    def train(*extra, script=("-m", "hftransfer.train")):
        return subprocess.run(
            [sys.executable, *script, *flags, *extra],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=600,
            cwd=REPO,
        )

    assert train("--output_dir", str(uninterrupted)).returncode == 0
    dead = train("--output_dir", str(killed), script=(str(KILL_SCRIPT), "14"))
    assert dead.returncode == -9, dead.stderr[-2000:]  # SIGKILL
    assert (killed / "checkpoint-12").is_dir() and not (killed / "checkpoint-16").exists()
    assert not (killed / "model.safetensors").exists()
    at_checkpoint = load_file(killed / "checkpoint-12" / "model.safetensors")
    # as if the kill had come while checkpoint-16 was being written: part of its files, no trainer state (and named
    # in the folder's record, which the run writes before the checkpoint)
    record_entries(killed, "checkpoint-16")
    (killed / "checkpoint-16").mkdir()
    (killed / "checkpoint-16" / "model.safetensors").write_bytes(b"\x00" * 100)
    resumed = train("--output_dir", str(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    expected, got = load_file(uninterrupted / "model.safetensors"), load_file(killed / "model.safetensors")
    assert expected.keys() == got.keys()
    for name in expected:  # same arithmetic in the same order: equal to float rounding
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(at_checkpoint[n], got[n]) for n in got)  # it did train after the checkpoint
    metrics = [json.loads((d / "eval_results.json").read_text()) for d in (uninterrupted, killed)]
    for key in ("eval_accuracy", "eval_f1_macro", "eval_loss"):
        assert metrics[1][key] == pytest.approx(metrics[0][key], abs=1e-5)
    history = json.loads((killed / "trainer_state.json").read_text())["log_history"]
    assert [h["step"] for h in history if "eval_loss" in h] == [4, 8, 12, 16, 20, 24, 28, 32]


def test_resume_flag_and_checkpoint_schedule(tmp_path):
    config = parse_config(["--model", "m", "--output_dir", str(tmp_path), "--resume"])
    assert config.training.resume_from_checkpoint == "latest"
    assert "resume_from_checkpoint" not in config.to_dict()["training"]  # repeating a run does not resume it
    config = parse_config(
        [
            "--model",
            "m",
            "--output_dir",
            str(tmp_path),
            "--resume",
            str(tmp_path / "checkpoint-3"),
            "--save_strategy",
            "steps",
            "--save_steps",
            "50",
        ]
    )
    assert config.training.resume_from_checkpoint == str(tmp_path / "checkpoint-3")
    # a checkpoint every 50 steps is evaluated every 50 steps, so the best one can be chosen
    assert (config.training.eval_strategy.value, config.training.eval_steps) == ("steps", 50)
    with pytest.raises(OutputDirError, match="no complete checkpoint to resume from"):
        resolve_checkpoint(parse_config(["--model", "m", "--output_dir", str(tmp_path), "--resume"]))
    with pytest.raises(OutputDirError, match="--resume: checkpoint not found"):
        resolve_checkpoint(config)


def _run_config(tiny_bert, files, out, **options):
    return make_config(
        model=tiny_bert,
        train_file=files["train"],
        validation_file=files["validation"],
        output_dir=out,
        num_train_epochs=1,
        per_device_train_batch_size=16,
        disable_tqdm="true",
        **options,
    )


def test_failure_while_saving_the_final_model_keeps_the_previous_one(tiny_bert, files, tmp_path, monkeypatch):
    out = tmp_path / "out"
    run(_run_config(tiny_bert, files, out))
    before = {name: (out / name).read_bytes() for name in ("model.safetensors", "config.json")}

    import transformers.modeling_utils as modeling_utils

    def half_written_then_disk_full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x00" * 1024)  # what a crash in the middle of a write leaves
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(modeling_utils, "safe_save_file", half_written_then_disk_full)
    with pytest.raises(OSError, match="No space left"):  # the first checkpoint's save, during training
        run(_run_config(tiny_bert, files, out, overwrite_output_dir="true", seed=7, learning_rate=1e-2))
    monkeypatch.undo()

    assert {name: (out / name).read_bytes() for name in before} == before
    classifier = pipeline("text-classification", model=str(out))
    assert classifier("a wonderful film")[0]["label"] in {"negative", "positive"}

    run(_run_config(tiny_bert, files, out, overwrite_output_dir="true", seed=7, learning_rate=1e-2))
    assert (out / "model.safetensors").read_bytes() != before["model.safetensors"]
    assert not staging_dir(out).exists()


def test_publish_directory_replaces_files_and_drops_stale_weights(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "pytorch_model.bin").write_bytes(b"old weights")
    (target / "config.json").write_text("old")
    (target / "eval_report.json").write_text("kept")
    (target / "model-of-mine.safetensors").write_bytes(b"the user's")  # named like weights, never recorded
    staging = staging_dir(target)
    staging.mkdir()
    (staging / "model.safetensors").write_bytes(b"new weights")
    (staging / "config.json").write_text("new")
    # the previous model's publication recorded pytorch_model.bin (files/written.py): only that one may go
    published = publish_directory(staging, target, replaceable={"pytorch_model.bin", "config.json"})
    assert [p.name for p in published][-1] == "model.safetensors"  # weights last
    assert sorted(p.name for p in target.iterdir()) == [
        "config.json",
        "eval_report.json",
        "model-of-mine.safetensors",
        "model.safetensors",
    ]
    assert (target / "config.json").read_text() == "new"
