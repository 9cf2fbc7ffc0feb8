"""Data loading, column mapping, label maps, splits and every bad-data case, on small local files."""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import make_config, sentiment_rows, write_rows

from hftransfer.data.labels import LABELS
from hftransfer.data.tables import DataError, check_utf8
from hftransfer.tasks.text_classification import load_data


def args(**kwargs):
    return make_config(model="unused", **kwargs)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl", ".parquet"])
def test_every_file_format_loads_with_string_labels(tmp_path, suffix):
    train = write_rows(tmp_path / f"train{suffix}", sentiment_rows(40))
    dev = write_rows(tmp_path / f"dev{suffix}", sentiment_rows(10, seed=5))
    data = load_data(args(train_file=str(train), validation_file=str(dev), seed=0))
    assert data.label_names == ["negative", "positive"]
    assert data.splits["train"].features[LABELS].names == ["negative", "positive"]
    # ids are integers, not strings cast back (the datasets pitfall with CSV string columns)
    assert set(data.splits["train"][LABELS]) == {0, 1}
    expected = [0 if r["label"] == "negative" else 1 for r in sentiment_rows(10, seed=5)]
    assert list(data.splits["validation"][LABELS]) == expected


def test_integer_labels_with_class_names(tmp_path):
    rows = [{"sentence": r["text"], "label": int(r["label"] == "positive")} for r in sentiment_rows(30)]
    train = write_rows(tmp_path / "train.tsv", rows)
    data = load_data(args(train_file=str(train), class_names=["neg", "pos"], seed=0))
    assert data.label_names == ["neg", "pos"]
    assert data.columns["text"] == "sentence"  # found by convention when text_column is not given
    plain = load_data(args(train_file=str(train), seed=0))
    assert plain.label_names == ["0", "1"]


def test_non_contiguous_integer_labels_map_to_sorted_ids(tmp_path):
    rows = [{"text": f"review {i}", "stars": [1, 3, 5][i % 3]} for i in range(30)]
    data = load_data(args(train_file=str(write_rows(tmp_path / "t.csv", rows)), label_column="stars", seed=0))
    assert data.label_names == ["1", "3", "5"]
    assert set(data.splits["train"][LABELS]) | set(data.splits["validation"][LABELS]) == {0, 1, 2}


def test_column_mapping_and_sentence_pairs(tmp_path):
    rows = [
        {"premise": f"p {i}", "hypothesis": f"h {i}", "gold": ["entail", "neutral", "contra"][i % 3]} for i in range(30)
    ]
    path = write_rows(tmp_path / "nli.jsonl", rows)
    data = load_data(args(train_file=str(path), label_column="gold", seed=0))
    assert data.columns == {"text": "premise", "text_pair": "hypothesis"}
    explicit = load_data(args(train_file=str(path), label_column="gold", text_column="hypothesis", seed=0))
    assert explicit.columns == {"text": "hypothesis", "text_pair": None}


def test_stratified_validation_carved_with_fixed_seed(tmp_path):
    rows = sentiment_rows(100, labels=("a", "b", "c", "d"))
    path = write_rows(tmp_path / "train.csv", rows)
    first = load_data(args(train_file=str(path), validation_fraction=0.2, seed=7))
    again = load_data(args(train_file=str(path), validation_fraction=0.2, seed=7))
    other = load_data(args(train_file=str(path), validation_fraction=0.2, seed=8))
    assert len(first.splits["validation"]) == 20 and len(first.splits["train"]) == 80
    assert Counter(first.splits["validation"][LABELS]) == {0: 5, 1: 5, 2: 5, 3: 5}  # stratified
    assert list(first.splits["validation"]["text"]) == list(again.splits["validation"]["text"])
    assert list(first.splits["validation"]["text"]) != list(other.splits["validation"]["text"])
    assert any("carved from train" in note for note in first.notes)


@pytest.mark.e2e
def test_carved_validation_is_datasets_own_stratified_split():
    """The carve reads the label ids through Arrow (datasets 5 reads a stratify column row by row) and must give
    exactly the split ``train_test_split(stratify_by_column=...)`` gives, on a plain and on a subset dataset."""
    import datasets
    import numpy as np

    from hftransfer.data.labels import carve_rows

    ids = np.random.default_rng(1).integers(0, 7, 3000).tolist()
    whole = datasets.Dataset.from_dict({"x": list(range(3000)), LABELS: ids}).cast_column(
        LABELS, datasets.ClassLabel(num_classes=7)
    )
    for ds, size, seed in ((whole, 400, 42), (whole.select(range(100, 2500)), 250, 3)):
        for stratify in (True, False):
            expected = ds.train_test_split(test_size=size, seed=seed, stratify_by_column=LABELS if stratify else None)
            train_rows, validation_rows = carve_rows(
                len(ds), size, seed, ds.with_format("arrow")[LABELS].to_numpy() if stratify else None
            )
            assert list(ds.select(validation_rows)["x"]) == list(expected["test"]["x"])
            assert list(ds.select(train_rows)["x"]) == list(expected["train"]["x"])


def test_max_samples_subsets(tmp_path):
    path = write_rows(tmp_path / "train.csv", sentiment_rows(100))
    data = load_data(args(train_file=str(path), max_train_samples=30, max_eval_samples=5, seed=0))
    assert len(data.splits["train"]) == 30 and len(data.splits["validation"]) == 5


# --- bad input: each error names the value at fault and the choices ---


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="train file not found: .*nope.csv"):
        load_data(args(train_file=str(tmp_path / "nope.csv"), seed=0))


def test_unsupported_extension_lists_formats(tmp_path):
    path = tmp_path / "train.xlsx"
    path.write_text("x")
    with pytest.raises(DataError, match=r"'\.xlsx'.*supported: \.csv, \.tsv, \.json, \.jsonl, \.parquet"):
        load_data(args(train_file=str(path), seed=0))


def test_unknown_column_lists_existing_columns(tmp_path):
    path = write_rows(tmp_path / "train.csv", sentiment_rows(20))
    with pytest.raises(DataError, match="column 'review' not found in the train split; its columns: text, label"):
        load_data(args(train_file=str(path), text_column="review", seed=0))
    with pytest.raises(DataError, match="column 'y' not found.*text, label"):
        load_data(args(train_file=str(path), label_column="y", seed=0))


def test_no_text_column_found_lists_columns(tmp_path):
    rows = [{"body": f"x {i}", "label": i % 2} for i in range(10)]
    with pytest.raises(DataError, match="set text_column to one of: body, label"):
        load_data(args(train_file=str(write_rows(tmp_path / "t.csv", rows)), seed=0))


def test_single_class_is_rejected(tmp_path):
    path = write_rows(tmp_path / "train.csv", [{"text": f"t {i}", "label": "spam"} for i in range(10)])
    with pytest.raises(DataError, match="1 class\\(es\\) in train \\(spam\\); classification needs at least two"):
        load_data(args(train_file=str(path), seed=0))


def test_empty_split_is_rejected(tmp_path):
    train = write_rows(tmp_path / "train.csv", sentiment_rows(10))
    dev = tmp_path / "dev.csv"
    dev.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(DataError, match="the validation split is empty: .*dev.csv. has no rows"):
        load_data(args(train_file=str(train), validation_file=str(dev), seed=0))


def test_unseen_validation_labels_are_named(tmp_path):
    train = write_rows(tmp_path / "train.csv", sentiment_rows(20))
    dev = write_rows(tmp_path / "dev.csv", sentiment_rows(6, labels=("negative", "mixed", "sarcastic")))
    with pytest.raises(
        DataError,
        match="labels in the validation split not seen in train: 'mixed', 'sarcastic'; "
        "train labels: negative, positive",
    ):
        load_data(args(train_file=str(train), validation_file=str(dev), seed=0))


def test_non_utf8_file_is_named_with_line(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes("text,label\ngood,pos\n".encode() + "caf\u00e9 bad,neg\n".encode("latin-1"))
    with pytest.raises(DataError, match="train.csv' is not UTF-8 text \\(bad byte at line 3\\)"):
        load_data(args(train_file=str(path), seed=0))
    check_utf8(write_rows(tmp_path / "ok.csv", [{"text": "caf\u00e9 \u2764", "label": "a"}]))  # UTF-8 passes


def test_missing_text_values_are_reported(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,label\ngood,pos\n,neg\nfine,pos\n", encoding="utf-8")
    with pytest.raises(
        DataError, match="1 empty value\\(s\\) in text column 'text' of the train split \\(first at row 1\\)"
    ):
        load_data(args(train_file=str(path), seed=0))


def test_float_labels_are_rejected(tmp_path):
    path = write_rows(tmp_path / "train.csv", [{"text": f"t {i}", "label": i / 3} for i in range(10)])
    with pytest.raises(DataError, match="holds float values; classification needs string or integer labels"):
        load_data(args(train_file=str(path), seed=0))


def test_class_names_must_cover_string_labels(tmp_path):
    path = write_rows(tmp_path / "train.csv", sentiment_rows(10))
    with pytest.raises(DataError, match="train labels \\['positive'\\] are missing from class_names"):
        load_data(args(train_file=str(path), class_names=["negative", "neutral"], seed=0))


def test_no_data_source(tmp_path):
    with pytest.raises(DataError, match="no training data"):
        load_data(args(seed=0))


def test_offline_hub_dataset_says_so():
    with pytest.raises(DataError, match="could not load Hub dataset 'stanfordnlp/sst2'.*unreachable.*local files"):
        load_data(args(dataset="stanfordnlp/sst2", seed=0))
