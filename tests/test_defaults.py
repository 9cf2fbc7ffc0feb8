"""Data-aware defaults: auto's decision, the carved validation rule, the time budget and the schedule's reasons."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
from conftest import make_config, sentiment_rows, tiny_run_flags, write_rows

from hftransfer.config.options import ConfigError, parse_duration
from hftransfer.data.labels import validation_size
from hftransfer.strategies import auto
from hftransfer.strategies.auto import FEW_PER_CLASS, LARGE_DATA, LP_FT_RATE_RATIO, SEPARABLE, decide
from hftransfer.training.recipe import main


@pytest.mark.parametrize(
    "case, expected",
    [
        # (training examples, classes, median per class, probe accuracy): tiny, large, separated, entangled
        ((60, 3, 20, 0.70), "lp_ft"),  # tiny and entangled: the head first
        ((60, 3, 20, 0.99), "linear_probe"),  # tiny but already separated
        ((50_000, 20, 2500, 0.99), "full"),  # large: fine-tuning pays, nothing measured
        ((5_000, 5, 1000, 0.98), "linear_probe"),  # well separated
        ((5_000, 5, 1000, 0.70), "full"),  # entangled, enough per class
        ((5_000, 100, 30, 0.70), "lp_ft"),  # entangled, few per class
        ((5_000, 5, 1000, None), "full"),  # no fixed-size features to measure
        ((200, 2, 100, 0.94, 49), "linear_probe"),  # 0.94 on 49 examples cannot be told from 0.95: the cheaper
        ((200, 2, 100, 0.85, 49), "full"),  # ... 0.85 on 49 can
        ((5_000, 5, 1000, 0.92, 300), "full"),  # ... and 0.92 on 300 can
        (
            (900, 43, 21, 0.63, 100, 1.0),
            "lp_ft",
        ),  # few per class, the body at the head's rate: the probe kept as fallback
        ((900, 43, 21, 0.99, 100, 1.0), "linear_probe"),  # ... unless the frozen features already separate them
        ((4_900, 50, 40, 0.29, 545, 0.1), "lp_ft"),  # few per class, a body at a tenth of the head's rate
    ],
)
def test_auto_decides_from_size_classes_and_separability(case, expected):
    chosen, reason = decide(*case)
    assert chosen == expected and reason
    assert LARGE_DATA > 5_000 and 0.7 < SEPARABLE < 0.98 and 30 < FEW_PER_CLASS < 1000 and 0.1 < LP_FT_RATE_RATIO < 1


@pytest.mark.e2e
def test_auto_on_real_runs_records_its_decision(tiny_bert, tmp_path, caplog, monkeypatch):
    train = write_rows(tmp_path / "train.csv", sentiment_rows(120, seed=1))
    out = tmp_path / "out"
    monkeypatch.setattr(auto, "PROBE_TRAIN", 50)  # smaller than the splits: the probe fits a sample
    monkeypatch.setattr(auto, "PROBE_VALIDATION", 10)
    with caplog.at_level(logging.INFO, logger="hftransfer"):
        main(tiny_run_flags(tiny_bert, out, train=train) + ["--strategy", "auto", "--max_steps", "2"])
    saved = (out / "hftransfer_config.yaml").read_text()
    line = next(line for line in saved.splitlines() if "auto chose" in line)
    assert "probe accuracy" in line and "median per class 48" in line  # 120 - validation (24) = 96 = 2 x 48
    # fitted on samples; 24 validation examples are too few to score it: cross-validated over both samples
    assert "probe accuracy (cross-validated)" in line and "probe validation 60" in line
    chosen = line.split("auto chose ")[1].split(":")[0]
    assert f"strategy: {chosen}" in saved and chosen in {"linear_probe", "lp_ft"}  # few per class: a probe first
    assert f"`{chosen}`" in (out / "README.md").read_text()
    # the probe strategy reads the features auto measured from the cache and computes only the rows left out:
    # each example once
    for split, (sampled, rest) in (("train", (50, 46)), ("validation", (10, 14))):
        assert caplog.text.count(f"{split}: features of {sampled} examples cached") == 1
        assert caplog.text.count(f"{split}: features of {rest} examples cached") == 1
        assert caplog.text.count(f"{split}: features of") == 2


@pytest.mark.parametrize(
    "train, classes, expected",
    [
        (245, 2, 49),
        (1000, 10, 100),
        (1000, 43, 100),
        (1000, 102, 200),
        (2914, 101, 291),
        (5452, 50, 545),
        (67349, 2, 5000),
        (320, 40, 64),
    ],
)
def test_the_carved_validation_rule(train, classes, expected):
    # a tenth, at least 100 and two per class, at most a fifth of train and 5,000
    assert validation_size(train, classes) == expected


def test_a_small_carved_validation_says_so(tiny_bert, tmp_path):
    from hftransfer.tasks.text_classification import load_data

    train = write_rows(tmp_path / "train.csv", sentiment_rows(100, seed=1))
    data = load_data(make_config(model=str(tiny_bert), train_file=str(train)))
    assert len(data.splits["validation"]) == 20
    assert any("too few to rank epochs reliably" in note for note in data.notes)
    explicit = load_data(make_config(model=str(tiny_bert), train_file=str(train), validation_fraction=0.1))
    assert len(explicit.splits["validation"]) == 10


def frames_folder(root, names):
    """Class folders of tiny images named by ``names(track, frame)``: 6 tracks of 4 frames per class."""
    from conftest import COLOURS, make_image

    for name, colour in COLOURS.items():
        for track in range(6):
            for frame in range(4):
                make_image(root / name / names(track, frame), tuple(c - 5 * frame for c in colour), size=(8, 8))
    return root


def carved_folder(root, **options):
    from hftransfer.tasks.image_classification import load_data

    data = load_data(
        make_config(
            task="image-classification",
            timm_arch="test_efficientnet",
            data_dir=str(root),
            validation_fraction=0.25,
            **options,
        )
    )
    return [[Path(p) for p in data.splits[split]["image"]] for split in ("train", "validation")], data.notes


def test_a_carved_validation_keeps_files_named_alike_on_one_side(tmp_path):
    """Frames of one track (00003_00001.png ...) are near-duplicates: validation takes whole tracks, of every class."""
    root = frames_folder(tmp_path / "frames", lambda track, frame: f"{track:05d}_{frame:05d}.png")
    (train, validation), notes = carved_folder(root)
    track = lambda path: (path.parent.name, path.stem.split("_")[0])  # noqa: E731
    assert not {track(p) for p in train} & {track(p) for p in validation}
    assert len(validation) == 12 and {p.parent.name for p in validation} == {"red", "blue"}  # a track of 4, 3 per class
    assert any("12 groups of files named alike (00000_* in" in note for note in notes)

    (train, validation), notes = carved_folder(root, validation_groups="none")
    assert {track(p) for p in train} & {track(p) for p in validation}  # file by file: tracks straddle the split
    assert not any("named alike" in note for note in notes)


@pytest.mark.parametrize(
    "names",
    [
        lambda track, frame: f"image_{4 * track + frame:04d}.png",  # one prefix per class
        lambda track, frame: f"{track}{frame}7_a{frame}c.png",  # no trailing number
        lambda track, frame: f"{4 * track + frame:03d}_1.png",
    ],
)  # no file has a sibling
def test_names_that_show_no_groups_are_carved_file_by_file(tmp_path, names):
    (train, validation), notes = carved_folder(frames_folder(tmp_path / "plain", names))
    assert len(validation) == 12 and not any("named alike" in note for note in notes)


def test_groups_follow_the_rows_of_a_selected_split(tmp_path):
    """A split that is a selection of a larger table (an index mapping) is grouped by its own rows."""
    import numpy as np
    from datasets import Dataset

    from hftransfer.data.groups import file_groups

    paths = []
    for track in range(8):
        for frame in range(3):
            paths.append(tmp_path / f"{track:03d}_{frame:03d}.png")
            paths[-1].write_bytes(b"")
    table = Dataset.from_dict({"image": [str(p) for p in paths]})
    rows = np.random.default_rng(0).permutation(len(paths)).tolist()
    groups, _ = file_groups(table.select(rows), np.zeros(len(rows), dtype=np.int64))
    tracks = [paths[row].name[:3] for row in rows]
    assert all((groups[i] == groups[j]) == (tracks[i] == tracks[j]) for i in range(len(rows)) for j in range(len(rows)))


def test_texts_longer_than_a_file_name_are_carved_as_texts(tiny_bert, tmp_path):
    """A text column is looked at as a possible list of files: a 300-character text is not a path (the check must
    not fail on it)."""
    from hftransfer.tasks.text_classification import load_data

    rows = [{"text": ("a long review " * 25 if i == 0 else f"text {i}"), "label": i % 2} for i in range(120)]
    data = load_data(make_config(model=str(tiny_bert), train_file=str(write_rows(tmp_path / "train.csv", rows))))
    assert len(data.splits["validation"]) == 24 and not any("named alike" in note for note in data.notes)


def test_an_unknown_validation_groups_value_names_the_choices():
    with pytest.raises(ConfigError, match="unknown validation_groups 'tracks'; valid: auto, none"):
        make_config(model="m", train_file="t.csv", validation_groups="tracks")


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("10m", 600), ("1.5h", 5400), ("1h30m", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_bad_durations_are_refused():
    for bad in ("10 minutes", "-5m", "m", "0s"):
        with pytest.raises(ConfigError, match="time_budget"):
            parse_duration(bad)


@pytest.mark.e2e
def test_time_budget_stops_in_time_and_leaves_a_loadable_model(tiny_bert, tmp_path, capsys):
    train = write_rows(tmp_path / "train.csv", sentiment_rows(400, seed=1))
    out = tmp_path / "out"
    started = time.monotonic()
    main(
        tiny_run_flags(tiny_bert, out, train=train)
        + ["--num_train_epochs", "200", "--time_budget", "30s", "--per_device_train_batch_size", "8"]
    )
    elapsed = time.monotonic() - started
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] < state["max_steps"]  # stopped by the budget, not by the plan
    assert elapsed < 30 + 40, elapsed  # the budget, plus the final evaluation and saving on a loaded machine
    from transformers import pipeline

    assert pipeline("text-classification", model=str(out))("a wonderful film")[0]["label"] in {"negative", "positive"}
    summary = capsys.readouterr().out
    assert "time budget 30s:" in summary and "steps fit the budget" in summary
    # the saved config and the card say it too (the note came after both were written)
    assert "# time budget 30s:" in (out / "hftransfer_config.yaml").read_text()
    assert "time budget 30s:" in (out / "README.md").read_text()


@pytest.mark.e2e
def test_a_probe_on_a_tiny_validation_split_is_selected_by_loss(tiny_bert, tmp_path):
    """Fewer than 100 validation examples: a probe's epochs are ranked by validation loss (ties on accuracy)."""
    train = write_rows(tmp_path / "train.csv", sentiment_rows(100, seed=1))
    out = tmp_path / "out"
    main(
        tiny_run_flags(tiny_bert, out, train=train)
        + ["--strategy", "linear_probe", "--feature_cache_dir", str(tmp_path / "f")]
    )
    saved = (out / "hftransfer_config.yaml").read_text()
    assert "metric_for_best_model: loss" in saved and "greater_is_better: false" in saved
    assert "validation examples tie on accuracy" in saved
    other = tmp_path / "chosen"
    main(
        tiny_run_flags(tiny_bert, other, train=train)
        + [
            "--strategy",
            "linear_probe",
            "--metric_for_best_model",
            "accuracy",
            "--feature_cache_dir",
            str(tmp_path / "f"),
        ]
    )
    assert "metric_for_best_model: accuracy" in (other / "hftransfer_config.yaml").read_text()  # the user's wins


def test_lp_ft_fine_tunes_one_epoch_less_than_the_tasks(tiny_bert, tmp_path):
    """Its probe phase has trained the head: the fine-tuning phase gets the task's epochs less one (lp_ft then costs
    what full fine-tuning does); full gets them all, and a step count bounds both phases unchanged."""
    from types import SimpleNamespace

    from hftransfer.engine.schedule import schedule_for
    from hftransfer.strategies import get_strategy

    train = write_rows(tmp_path / "train.csv", sentiment_rows(40, seed=1))
    data = SimpleNamespace(splits={"train": list(range(32)), "validation": list(range(8))}, multi_label=False)
    config = make_config(model=str(tiny_bert), train_file=str(train), strategy="lp_ft", num_train_epochs=5)
    epochs, reason = schedule_for(config, get_strategy("lp_ft"), data)["num_train_epochs"]
    assert epochs == 4 and "probe phase has trained the head" in reason
    assert "num_train_epochs" not in schedule_for(config, get_strategy("full"), data)
    stepped = make_config(model=str(tiny_bert), train_file=str(train), strategy="lp_ft", max_steps=10)
    assert "num_train_epochs" not in schedule_for(stepped, get_strategy("lp_ft"), data)
    single = make_config(model=str(tiny_bert), train_file=str(train), strategy="lp_ft", num_train_epochs=1)
    assert "num_train_epochs" not in schedule_for(single, get_strategy("lp_ft"), data)
