"""``hftransfer audit`` and what it shares with ``train``: example ids, exclude lists, exact-leak warnings,
label-issue ranking, duplicates, outliers, the report's contract and the page (rendered in headless Chromium)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_class_folder, make_config, make_image, sentiment_rows, tiny_run_flags, write_rows

import hftransfer.cli.main as cli
from hftransfer.auditing.duplicates import duplicate_records, exact_pairs
from hftransfer.auditing.label_issues import score_labels, score_multi_labels
from hftransfer.auditing.neighbours import nearest
from hftransfer.auditing.outliers import outlier_rows, outlier_scores
from hftransfer.data.fingerprints import NearRule, text_key
from hftransfer.data.leaks import classes_too_small, exact_leaks
from hftransfer.data.source_ids import SOURCE
from hftransfer.data.tables import DataError
from hftransfer.tasks import get_task

CHROMIUM = Path("/usr/bin/chromium")


def text_load(**options):
    return get_task("text-classification").load_data(make_config(task="text-classification", **options))


def image_load(**options):
    return get_task("image-classification").load_data(
        make_config(task="image-classification", timm_arch="test_efficientnet", **options)
    )


# --- ids and exclude lists ----------------------------------------------------------------------------------


def test_ids_are_row_numbers_for_tables_and_carved_validation_keeps_train_ids(tmp_path):
    train = write_rows(tmp_path / "train.csv", sentiment_rows(120, seed=1))
    test = write_rows(tmp_path / "test.csv", sentiment_rows(10, seed=2))
    data = text_load(model="unused", train_file=str(train), test_file=str(test))
    ids = {split: list(ds[SOURCE]) for split, ds in data.splits.items()}
    assert sorted(ids["train"] + ids["validation"], key=lambda s: int(s.split(":")[1])) == [
        f"train:{i}" for i in range(120)
    ]
    assert ids["test"] == [f"test:{i}" for i in range(10)]
    texts = dict(zip(ids["validation"], list(data.splits["validation"]["text"])))
    rows = list(csv.DictReader(open(train, encoding="utf-8")))
    assert all(rows[int(source.split(":")[1])]["text"] == text for source, text in texts.items())


def test_ids_are_paths_relative_to_data_dir_and_as_written_in_listings(tmp_path):
    root = make_class_folder(tmp_path / "photos", 4)
    data = image_load(data_dir=str(root), validation_fraction=0.25)
    ids = sorted(list(data.splits["train"][SOURCE]) + list(data.splits["validation"][SOURCE]))
    assert ids[0] == "train:blue/blue_0.png" and len(ids) == 8
    pairs = [{"file": "red/red_1.png", "label": "red"}, {"file": "blue/blue_2.png", "label": "blue"}]
    listing = write_rows(tmp_path / "photos" / "list.csv", pairs * 2)
    write_rows(tmp_path / "photos" / "more.csv", [{"file": "blue/blue_1.png", "label": "blue"}] * 3)
    data = image_load(train_file=str(listing), validation_file=str(tmp_path / "photos" / "more.csv"))
    assert list(data.splits["validation"][SOURCE]) == ["validation:blue/blue_1.png"] * 3
    assert Path(list(data.splits["validation"]["file"])[0]).is_absolute()  # resolved for reading, the id as written


def test_exclude_file_drops_the_listed_examples_and_names_ids_that_match_nothing(tmp_path):
    root = make_class_folder(tmp_path / "photos", 6)
    exclude = tmp_path / "exclude.txt"
    exclude.write_text("# reviewed\ntrain:red/red_0.png\n\ntrain:blue/blue_5.png\n")
    data = image_load(data_dir=str(root), exclude_file=str(exclude), validation_fraction=0.2)
    kept = list(data.splits["train"][SOURCE]) + list(data.splits["validation"][SOURCE])
    assert len(kept) == 10 and "train:red/red_0.png" not in kept
    assert any("2 example(s) dropped" in note and "2 from train" in note for note in data.notes)
    exclude.write_text("train:red/red_0.png\ntrain:red/no_such.png\n")
    with pytest.raises(DataError, match="1 id.*'train:red/no_such.png'.*ids look like 'train:"):
        image_load(data_dir=str(root), exclude_file=str(exclude))
    exclude.write_text("holdout:red/red_0.png\n")
    with pytest.raises(DataError, match="line 1.*'holdout:red/red_0.png'.*train, validation, test"):
        image_load(data_dir=str(root), exclude_file=str(exclude))


# --- the pieces -----------------------------------------------------------------------------------------


def test_text_key_ignores_case_punctuation_and_spacing():
    assert text_key("What is the capital of France ?") == text_key("what is the  capital of france")
    assert text_key("Ich  heiße Anna!") == text_key("ICH HEISSE ANNA")
    assert text_key("a cat") != text_key("a car")


def test_exact_pairs_put_the_earlier_split_first_and_leaks_before_duplicates_inside_a_split():
    sources = ["test:0", "train:0", "train:1", "validation:0", "train:2"]
    keys = ["x", "x", "y", "z", "y"]
    assert exact_pairs(sources, keys) == [(1, 0), (2, 4)]
    features = np.random.default_rng(0).normal(size=(5, 8))
    records = duplicate_records(sources, keys, nearest(features, 2), NearRule(1.1, 1.1))
    assert [(r["a"], r["b"], r["exact"]) for r in records] == [
        ({"split": "train", "id": "0"}, {"split": "test", "id": "0"}, True),
        ({"split": "train", "id": "1"}, {"split": "train", "id": "2"}, True),
    ]


def clusters(n_per_class: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(classes, 16))
    labels = np.repeat(np.arange(classes), n_per_class)
    return centres[labels] + rng.normal(size=(len(labels), 16)), labels


def test_label_scores_rank_flipped_labels_first():
    features, labels = clusters(60, 4)
    rng = np.random.default_rng(1)
    flipped = rng.choice(len(labels), 24, replace=False)
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, 4, len(flipped))) % 4
    scores = score_labels(features, noisy, 4, seed=0)
    top = set(np.argsort(scores.quality)[:24].tolist())
    assert len(top & set(flipped.tolist())) >= 22  # precision@K
    assert np.isin(flipped, np.flatnonzero(scores.flagged)).mean() >= 0.9  # cleanlab's estimated set holds them
    assert (scores.suggested[flipped] == labels[flipped]).mean() >= 0.9


def test_multi_label_scores_find_dropped_and_added_labels():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, (300, 3))
    features = targets @ rng.normal(scale=3.0, size=(3, 16)) + rng.normal(size=(300, 16))
    noisy = targets.copy()
    wrong = rng.choice(300, 20, replace=False)
    noisy[wrong, 0] = 1 - noisy[wrong, 0]  # one label added or dropped
    scores = score_multi_labels(features, noisy.astype(float), seed=0)
    assert len(set(np.argsort(scores.quality)[:20].tolist()) & set(wrong.tolist())) >= 16
    assert (scores.suggested[wrong] == targets[wrong]).all(axis=1).mean() >= 0.8


def test_outliers_are_the_points_far_from_every_other():
    features, _ = clusters(50, 3)
    far = np.vstack([features, np.full((2, 16), 40.0), np.full((1, 16), -40.0)])
    rows, fence = outlier_rows(outlier_scores(nearest(far, 10)))
    assert set(rows.tolist()) >= {150, 151, 152} and len(rows) <= 5 and fence > 0


def test_train_checks_warn_of_exact_copies_across_splits_and_small_classes(tmp_path):
    rows = sentiment_rows(60, seed=1)
    leaked = [dict(rows[3], text=rows[3]["text"].upper() + " !"), *sentiment_rows(9, seed=2)]
    data = text_load(
        model="unused",
        train_file=str(write_rows(tmp_path / "train.csv", rows)),
        validation_file=str(write_rows(tmp_path / "dev.csv", sentiment_rows(12, seed=3))),
        test_file=str(write_rows(tmp_path / "test.csv", leaked)),
    )
    note = exact_leaks(data)
    assert note.startswith("leak: 1 of test are exact copies") and "test:0 = train:3" in note
    assert classes_too_small(data) is None
    small = text_load(
        model="unused",
        train_file=str(tmp_path / "train.csv"),
        validation_file=str(write_rows(tmp_path / "small.csv", sentiment_rows(6, seed=3))),
    )
    assert exact_leaks(small) is None
    assert "2 class(es) have fewer than 5" in classes_too_small(small)


# --- the command --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def leaky_text(tmp_path_factory):
    root = tmp_path_factory.mktemp("leaky")
    train = sentiment_rows(80, seed=1)
    test = [dict(train[5], text=train[5]["text"].capitalize() + "."), *sentiment_rows(19, seed=4)]
    return {
        "train_file": write_rows(root / "train.csv", train),
        "test_file": write_rows(root / "test.csv", test),
    }


@pytest.mark.e2e
def test_audit_reports_a_planted_leak_and_train_drops_it_with_exclude_file(tiny_bert, leaky_text, tmp_path, capsys):
    report_dir = tmp_path / "audit"
    argv = ["audit", "--model", str(tiny_bert), "--report_dir", str(report_dir), "--disable_tqdm", "true"]
    argv += [f"--{k}={v}" for k, v in leaky_text.items()] + ["--fix_suggestions", str(tmp_path / "fix.csv")]
    assert cli.main(argv) == 0
    assert "leaks across splits: 1 (1 exact)" in capsys.readouterr().out
    report = json.loads((report_dir / "audit_report.json").read_text())
    assert {"label_issues", "duplicates", "outliers", "class_counts"} <= set(report)
    assert report["duplicates"][0] == {
        "a": {"split": "train", "id": "5"},
        "b": {"split": "test", "id": "0"},
        "similarity": 1.0,
        "exact": True,
    }
    assert report["class_counts"]["train"] == {"negative": 40, "positive": 40}
    assert report["class_counts"]["test"] == {"negative": 10, "positive": 10}
    for issue in report["label_issues"]:
        assert set(issue) == {"split", "id", "given", "suggested", "score"} and issue["given"] != issue["suggested"]
    assert [o["score"] for o in report["outliers"]] == sorted((o["score"] for o in report["outliers"]), reverse=True)
    with open(tmp_path / "fix.csv", encoding="utf-8") as handle:
        assert next(csv.reader(handle)) == ["split", "id", "given", "suggested", "score"]
    exclude = (report_dir / "exclude.txt").read_text()
    assert "\ntrain:5\n" in exclude
    assert cli.main(argv) == 2  # an earlier audit is not replaced unless asked
    assert "--overwrite" in capsys.readouterr().err

    out = tmp_path / "run"
    flags = tiny_run_flags(tiny_bert, out, train=leaky_text["train_file"], test=leaky_text["test_file"])
    assert cli.main(["train", *flags]) == 0
    card = (out / "README.md").read_text()
    assert "leak: 1 of test are exact copies" in card and "test:0 = train:5" in card
    capsys.readouterr()
    assert cli.main(["train", *flags, "--exclude_file", str(report_dir / "exclude.txt"), "--overwrite_output_dir"]) == 0
    printed = capsys.readouterr().out
    assert "exclude_file: 1 example(s) dropped" in printed and "leak:" not in printed

    # evaluating the run on other data does not apply its exclude list there (train:5 would drop that file's row 5)
    capsys.readouterr()
    assert cli.main(["eval", str(out), "--data", str(leaky_text["test_file"]), "--output", str(tmp_path / "ev")]) == 0
    assert "(20 examples)" in capsys.readouterr().out

    # the finished run's predictions join the evidence; its data is read from its own config
    assert cli.main(["audit", "--run", str(out), "--report_dir", str(tmp_path / "with-run")]) == 0
    with_run = json.loads((tmp_path / "with-run" / "audit_report.json").read_text())
    assert with_run["meta"]["run"] == str(out) and "averaged with the run's own" in with_run["method"]["label_issues"]
    assert all(r["a"]["split"] == r["b"]["split"] for r in with_run["duplicates"])  # the run left the leak out
    assert with_run["meta"]["data_notes"][0].startswith("exclude_file: 1 example(s) dropped")


@pytest.fixture
def leaky_photos(tmp_path):
    root = tmp_path / "photos"
    for split in ("train", "val"):
        make_class_folder(root / split, 6)
    rng = np.random.default_rng(0)
    for i in range(6):  # textured photos, so thumbnails are not flat colour
        for name in ("red", "blue"):
            pixels = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
            pixels[..., 0 if name == "red" else 2] = 230
            from PIL import Image

            Image.fromarray(pixels).save(root / "train" / name / f"{name}_{i}.png")
    shutil.copy(root / "train" / "red" / "red_2.png", root / "val" / "red" / "copied.png")
    make_image(root / "train" / "blue" / "blank.png", (255, 255, 255))
    return root


@pytest.mark.e2e
def test_audit_page_renders_in_headless_chromium(leaky_photos, timm_weights, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    report_dir = tmp_path / "audit"
    argv = ["audit", "--task", "image-classification", "--timm_arch", "test_efficientnet"]
    argv += ["--weights", str(timm_weights), "--data_dir", str(leaky_photos), "--report_dir", str(report_dir)]
    assert cli.main(argv) == 0
    report = json.loads((report_dir / "audit_report.json").read_text())
    assert report["duplicates"][0]["a"] == {"split": "train", "id": "train/red/red_2.png"}
    assert report["duplicates"][0]["b"] == {"split": "validation", "id": "val/red/copied.png"}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page()
        errors: list[str] = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto((report_dir / "audit.html").resolve().as_uri())
        page.wait_for_load_state("load")
        images = page.locator("img")
        assert images.count() >= 2
        assert all(images.nth(i).evaluate("e => e.complete && e.naturalWidth > 0") for i in range(images.count()))
        shot = images.first.screenshot()
        assert page.locator("svg rect").count() >= 4  # the class-balance chart
        browser.close()
    assert errors == []
    from io import BytesIO

    from PIL import Image

    pixels = np.asarray(Image.open(BytesIO(shot)).convert("L"), dtype=float)
    assert pixels.std() > 10  # the thumbnail rendered, not a blank box


@pytest.mark.e2e
def test_python_api_audits_data_held_in_memory_by_row_number(tiny_bert, tmp_path):
    import pandas as pd

    import hftransfer

    train = pd.DataFrame(sentiment_rows(60, seed=1))
    test = pd.concat([pd.DataFrame(sentiment_rows(9, seed=5)), train.iloc[[7]]], ignore_index=True)
    found = hftransfer.audit(model=str(tiny_bert), train=train, test=test, report_dir=tmp_path / "audit")
    assert found.report["duplicates"][0]["a"] == {"split": "train", "id": "7"}
    assert found.report["duplicates"][0]["b"] == {"split": "test", "id": "9"}
    assert found.report == json.loads((tmp_path / "audit" / "audit_report.json").read_text())
    assert {path.name for path in found.written} == {"audit_report.json", "exclude.txt", "audit.html"}
    with pytest.raises(hftransfer.HftransferError, match="not empty; pass --overwrite"):
        hftransfer.audit(model=str(tiny_bert), train=train, report_dir=tmp_path / "audit")


def test_auto_measurement_warns_of_near_copies_of_validation_images():
    from hftransfer.strategies.auto import warn_of_near_copies

    config = make_config(task="image-classification", timm_arch="test_efficientnet")
    rng = np.random.default_rng(0)
    train, validation = rng.normal(size=(50, 32)), rng.normal(size=(10, 32))
    warn_of_near_copies(config, train, validation)
    assert not any(note.startswith("leak:") for note in config.notes)
    validation[3] = train[7] + rng.normal(scale=0.01, size=32)
    warn_of_near_copies(config, train, validation)
    assert config.notes[-1].startswith("leak: 1 of the 10 validation images auto measured has a near copy")


@pytest.mark.e2e
def test_train_with_auto_warns_of_an_altered_copy_in_validation(leaky_photos, timm_weights, tmp_path):
    from PIL import Image

    copied = leaky_photos / "val" / "red" / "copied.png"
    pixels = np.asarray(Image.open(copied)).copy()
    pixels[0, 0] = 0  # one pixel: no longer byte-identical, so the exact check misses it
    Image.fromarray(pixels).save(copied)
    out = tmp_path / "run"
    argv = [
        "train",
        "--task",
        "image-classification",
        "--timm_arch",
        "test_efficientnet",
        "--weights",
        str(timm_weights),
    ]
    argv += [
        "--data_dir",
        str(leaky_photos),
        "--output_dir",
        str(out),
        "--num_train_epochs",
        "1",
        "--disable_tqdm",
        "true",
    ]
    assert cli.main(argv) == 0
    card = (out / "README.md").read_text()
    assert "leak: 1 of the 13 validation images auto measured has a near copy" in card


@pytest.mark.e2e
def test_multi_label_audit_reports_label_lists(tiny_bert, tmp_path):
    rows = [dict(r, label=r["label"] + (";loud" if i % 3 == 0 else "")) for i, r in enumerate(sentiment_rows(60))]
    train = write_rows(tmp_path / "train.csv", rows)
    argv = ["audit", "--model", str(tiny_bert), "--train_file", str(train), "--label_separator", ";"]
    assert cli.main([*argv, "--report_dir", str(tmp_path / "audit")]) == 0
    report = json.loads((tmp_path / "audit" / "audit_report.json").read_text())
    assert report["class_counts"]["train"] == {"loud": 20, "negative": 30, "positive": 30}
    for issue in report["label_issues"]:
        assert isinstance(issue["given"], list) and isinstance(issue["suggested"], list)
    assert "<svg" in (tmp_path / "audit" / "audit.html").read_text()


def test_audit_refuses_too_few_examples_before_any_model_runs(tmp_path):
    from hftransfer.auditing.run import AuditError, run_audit

    train = write_rows(tmp_path / "train.csv", sentiment_rows(6))
    config = make_config(task="text-classification", model=str(tmp_path / "never-loaded"), train_file=str(train))
    config.data.validation_fraction = 0.34
    with pytest.raises(AuditError, match="6 examples .* too few to audit"):
        run_audit(config, tmp_path / "audit")
    assert not (tmp_path / "audit").exists()
