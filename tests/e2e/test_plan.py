"""``--dry_run``: the settled plan, each value with its source and reason, and nothing trained or written; a real
run then makes the same choices and its saved config and card say so."""

from __future__ import annotations

import pytest
import yaml
from conftest import sentiment_rows, write_rows

import hftransfer.cli.main as cli
from hftransfer.training.parse import parse_config
from hftransfer.training.plan import plan_rows
from hftransfer.training.recipe import run

pytestmark = pytest.mark.e2e  # end to end: trains or starts processes, seconds each


def test_dry_run_prints_every_decision_and_writes_nothing(tiny_bert, tmp_path, capsys):
    train = write_rows(tmp_path / "train.csv", sentiment_rows(100, seed=1))
    out = tmp_path / "out"
    flags = [
        "--model",
        str(tiny_bert),
        "--train_file",
        str(train),
        "--output_dir",
        str(out),
        "--learning_rate",
        "3e-4",
        "--disable_tqdm",
        "true",
    ]
    assert cli.main(["train", *flags, "--dry_run", "true"]) == 0
    printed = capsys.readouterr().out
    assert not out.exists()  # nothing written, not even the folder
    assert "dry run: nothing trained or written" in printed and "auto chose" in printed

    config = parse_config([*flags, "--dry_run", "true"])
    planned = run(config).config
    planned_rows = list(plan_rows(planned))
    rows = {option: (value, source, why) for option, value, source, why in planned_rows}
    assert rows["learning_rate"] == ("0.0003", "flag", "")
    assert rows["strategy"][1] == "strategy auto" and rows["strategy"][2]  # chosen, with its reason
    assert rows["per_device_train_batch_size"][1] == "task text-classification"
    assert rows["weight_decay"][1] == "hftransfer's default"
    chosen = {option: value for option, (value, source, why) in rows.items() if why}
    assert {"strategy", "probe_epochs", "head_learning_rate", "num_train_epochs"} <= set(chosen), rows  # lp_ft

    capsys.readouterr()
    result = run(parse_config([*flags, "--time_budget", "10m"]))  # the real run settles the same way
    summary = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    saved_text = (out / "hftransfer_config.yaml").read_text()
    # settled once, before training: nothing after it changed the config, and the saved file is the plan's
    assert result.plan.resolved == result.config.resolved_yaml() and saved_text.endswith(result.plan.resolved)
    assert [row for row in result.plan.rows if row[3]] == [row for row in planned_rows if row[3]]
    saved = yaml.safe_load(saved_text)
    card = (out / "README.md").read_text()
    values = {k: v for section in saved.values() for k, v in section.items()}
    for option, value in chosen.items():
        assert str(values[option]) == value, (option, values[option], value)
        if option in {"strategy", "per_device_eval_batch_size"}:
            continue  # said in auto's own note / a machine setting, not saved as a note
        assert f"# {option}: " in saved_text and f"{option}: " in card and f"{option}: " in summary, option
    # every note (auto's decision, the schedule's choices, how the time budget was spent) in all three
    notes = [line[2:] for line in saved_text.splitlines() if line.startswith("# ") and ": " in line][1:]
    assert any(note.startswith("auto chose lp_ft") for note in notes)
    assert any(note.startswith("time budget 10m: ") for note in notes)
    for note in notes:
        assert " ".join(note.split()) in summary, note
        assert note.split(" (")[0] in card, note
