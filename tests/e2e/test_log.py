"""A log a person can read: written to a file or a pipe, a run's output holds no progress-bar fragments and no raw
log dicts, and one compact line per evaluation."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, sentiment_rows, subprocess_env, tiny_run_flags, write_rows

pytestmark = pytest.mark.e2e  # end to end: trains or starts processes, seconds each

HFTRANSFER = str(Path(sys.executable).parent / "hftransfer")


def test_a_piped_log_has_one_line_per_evaluation_and_no_bar_fragments(tiny_bert, tmp_path):
    files = {
        "train": write_rows(tmp_path / "train.csv", sentiment_rows(64, seed=1)),
        "validation": write_rows(tmp_path / "dev.csv", sentiment_rows(21, seed=2)),
    }
    flags = [f for f in tiny_run_flags(tiny_bert, tmp_path / "o", **files) if f not in ("--disable_tqdm", "true")]
    done = subprocess.run(
        [HFTRANSFER, "train", *flags, "--num_train_epochs", "3", "--logging_steps", "2"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=REPO,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert "\r" not in log and "%|" not in log, log[-3000:]  # no progress bar, not even transformers' or datasets'
    assert "{'loss'" not in log and "{'eval_loss'" not in log, log[-3000:]
    lines = [line for line in log.splitlines() if re.match(r"epoch \d+/3 · step \d+/\d+ · ", line)]
    assert len(lines) == 3, log[-3000:]
    assert re.fullmatch(
        r"epoch 3/3 · step 12/12 · train loss [\d.]+ · eval loss [\d.]+ · f1_macro [\d.]+ "
        r"\(best [\d.]+\)",
        lines[-1],
    ), lines[-1]
