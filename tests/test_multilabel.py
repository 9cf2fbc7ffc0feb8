"""Multi-label classification: the three ways to give labels, the checks on them, thresholds, metrics, the
saved model (pipeline's sigmoid scores), predict, eval and export, for texts and images."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from conftest import NEUTRAL, make_config, make_image, write_rows

from hftransfer.data.tables import DataError
from hftransfer.evaluation.multilabel import constant_baseline, multilabel_metrics
from hftransfer.evaluation.thresholds import MIN_POSITIVES, choose_thresholds, fitted, tune_thresholds
from hftransfer.training.recipe import main

TOPICS = {"sports": ["goal", "match", "team"], "food": ["pizza", "pasta", "salad"], "music": ["song", "guitar", "band"]}


def topic_rows(n: int, seed: int) -> list[dict]:
    """Texts that mention each topic with probability 0.4 (so some mention none, some several)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        labels = [topic for topic in TOPICS if rng.random() < 0.4]
        words = rng.sample(NEUTRAL, 4) + [rng.choice(TOPICS[t]) for t in labels]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "labels": labels})
    return rows


def as_format(rows: list[dict], kind: str) -> list[dict]:
    if kind == "list":
        return [{"text": r["text"], "label": r["labels"]} for r in rows]
    if kind == "separator":
        return [{"text": r["text"], "label": ";".join(r["labels"])} for r in rows]
    return [{"text": r["text"], **{t: int(t in r["labels"]) for t in TOPICS}} for r in rows]  # one-hot


FORMAT_FLAGS = {"list": {}, "separator": {"label_separator": ";"}, "one_hot": {"label_columns": list(TOPICS)}}
FORMAT_SUFFIX = {"list": ".jsonl", "separator": ".csv", "one_hot": ".parquet"}


def load(tmp_path, kind: str, train_rows, validation_rows=None, **options):
    from hftransfer.tasks.text_classification import load_data

    suffix = FORMAT_SUFFIX[kind]
    files = {"train_file": str(write_rows(tmp_path / f"train{suffix}", as_format(train_rows, kind)))}
    if validation_rows is not None:
        files["validation_file"] = str(write_rows(tmp_path / f"dev{suffix}", as_format(validation_rows, kind)))
    return load_data(make_config(model="unused", **files, **{**FORMAT_FLAGS[kind], **options}))


@pytest.mark.parametrize("kind", ["list", "separator", "one_hot"])
def test_every_label_format_gives_the_same_targets(tmp_path, kind):
    rows = topic_rows(40, seed=1)
    data = load(tmp_path, kind, rows, topic_rows(12, seed=2))
    assert data.multi_label and set(data.label_names) == set(TOPICS)
    names = data.label_names
    expected = [[float(name in r["labels"]) for name in names] for r in rows]
    assert data.splits["train"]["labels"] == expected
    unlabelled = sum(not r["labels"] for r in rows)
    assert unlabelled and any(f"{unlabelled} with none" in note for note in data.notes)


def test_multi_label_checks_name_the_bad_value(tmp_path):
    rows = topic_rows(40, seed=1)
    with pytest.raises(DataError, match=r"validation split not seen in train: 'jazz'"):
        load(tmp_path, "list", rows, rows[:5] + [{"text": "a b", "labels": ["jazz"]}])
    with pytest.raises(DataError, match=r"label_separator '\|' splits none of the training labels"):
        load(tmp_path, "separator", rows, label_separator="|")
    bad = as_format(rows, "one_hot")
    bad[3]["food"] = 2
    write_rows(tmp_path / "bad.parquet", bad)
    from hftransfer.tasks.text_classification import load_data

    with pytest.raises(DataError, match=r"one-hot column 'food' holds 2 \(1 such rows\)"):
        load_data(make_config(model="unused", train_file=str(tmp_path / "bad.parquet"), label_columns=list(TOPICS)))
    with pytest.raises(DataError, match="no labels at all"):
        load(tmp_path, "list", [{"text": r["text"], "labels": []} for r in rows])
    with pytest.raises(DataError, match="holds lists of labels but multi_label is false"):
        load(tmp_path, "list", rows, multi_label=False)


def test_image_folders_refuse_multi_label(tmp_path):
    from hftransfer.tasks.image_classification import load_data

    make_image(tmp_path / "imgs" / "red" / "a.png", (200, 0, 0))
    with pytest.raises(DataError, match="one label per image"):
        load_data(
            make_config(task="image-classification", model="unused", data_dir=str(tmp_path / "imgs"), multi_label=True)
        )


def test_thresholds_are_tuned_per_label_with_a_global_fallback_for_rare_labels():
    rng = np.random.default_rng(0)
    n = 400
    targets = np.zeros((n, 3), dtype=int)
    targets[:, 0] = rng.random(n) < 0.3
    targets[:, 1] = rng.random(n) < 0.3
    targets[: MIN_POSITIVES - 1, 2] = 1  # too rare to tune on its own
    scores = np.clip(rng.normal(0.2, 0.05, (n, 3)), 0, 1)
    scores[:, 0] += 0.3 * targets[:, 0]  # label 0 separates at about 0.35
    scores[:, 1] = 0.7 + 0.02 * targets[:, 1] + rng.normal(0, 0.002, n)  # label 1 separates between 0.7 and 0.72
    thresholds, global_threshold, tuned = tune_thresholds(targets, scores)
    assert tuned.tolist() == [True, True, False]
    assert 0.25 < thresholds[0] <= 0.45 and 0.70 < thresholds[1] <= 0.72 and thresholds[2] == global_threshold
    tuned_f1 = multilabel_metrics(targets[:, :2], scores[:, :2], thresholds[:2])["f1_micro"]
    assert tuned_f1 > 0.95 > multilabel_metrics(targets[:, :2], scores[:, :2], 0.5)["f1_micro"]
    # micro (the default) never ends below the global threshold's micro-F1; macro maximises each label's own F1
    assert (
        multilabel_metrics(targets, scores, thresholds)["f1_micro"]
        >= multilabel_metrics(targets, scores, global_threshold)["f1_micro"]
    )
    macro, _, _ = tune_thresholds(targets, scores, "macro")
    tuned, shared = multilabel_metrics(targets, scores, macro), multilabel_metrics(targets, scores, thresholds)
    assert tuned["f1_macro"] >= shared["f1_macro"]


def test_metrics_match_scikit_learn_and_the_constant_baseline():
    from sklearn.metrics import f1_score, hamming_loss

    targets = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    scores = np.array([[0.9, 0.2, 0.4], [0.1, 0.8, 0.3], [0.7, 0.4, 0.1], [0.2, 0.3, 0.9]])
    metrics = multilabel_metrics(targets, scores, 0.5)
    predicted = (scores >= 0.5).astype(int)
    assert metrics["f1_micro"] == pytest.approx(f1_score(targets, predicted, average="micro"))
    assert metrics["f1_samples"] == pytest.approx(f1_score(targets, predicted, average="samples"))
    assert metrics["hamming_loss"] == pytest.approx(hamming_loss(targets, predicted))
    assert metrics["subset_accuracy"] == 0.5 and metrics["map"] == pytest.approx(1.0)
    baseline = constant_baseline(targets, targets)
    assert 0 < baseline["f1_micro"] < metrics["f1_micro"]


def test_pos_weight_loss_is_bce_with_pos_weight_normalised_over_the_update():
    from hftransfer.engine.losses import WeightedMultiLabelLoss

    logits, labels = torch.randn(6, 3), (torch.rand(6, 3) < 0.3).float()
    weight = torch.tensor([1.0, 4.0, 9.0])
    loss = WeightedMultiLabelLoss(weight)
    reference = torch.nn.BCEWithLogitsLoss(pos_weight=weight)(logits, labels)
    assert loss({"logits": logits}, labels) == pytest.approx(reference.item(), rel=1e-6)
    # in training the Trainer gives the entries of the whole update: two halves then add up to the mean
    halves = sum(loss({"logits": logits[i : i + 3]}, labels[i : i + 3], num_items_in_batch=18) for i in (0, 3))
    assert halves == pytest.approx(reference.item(), rel=1e-6)


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["list", "separator", "one_hot"])
def test_text_multi_label_trains_saves_and_predicts(tiny_bert, tmp_path, kind):
    from transformers import pipeline

    from hftransfer.artifacts.predict import predict_inputs

    suffix = FORMAT_SUFFIX[kind]
    files = {
        split: write_rows(tmp_path / f"{split}{suffix}", as_format(topic_rows(n, seed), kind))
        for split, n, seed in (("train", 96, 1), ("validation", 40, 2), ("test", 30, 3))
    }
    out = tmp_path / "out"
    flags = [
        "--model",
        str(tiny_bert),
        "--output_dir",
        str(out),
        "--num_train_epochs",
        "2",
        "--per_device_train_batch_size",
        "16",
        "--disable_tqdm",
        "true",
        "--dataloader_pin_memory",
        "false",
        "--strategy",
        "full",
        "--pos_weight",
        "true",
    ]
    for split, path in files.items():
        flags += [f"--{split}_file", str(path)]
    for key, value in FORMAT_FLAGS[kind].items():
        flags += [f"--{key}", *(value if isinstance(value, list) else [value])]
    assert main(flags) == 0

    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert set(config["label_thresholds"]) == set(TOPICS)
    assert all(0 < t < 1 for t in config["label_thresholds"].values())
    report = json.loads((out / "eval_report.json").read_text())
    for split in ("validation", "test"):
        assert report[split]["multi_label"] and set(report[split]["per_label"]) == set(TOPICS)
        assert {"f1_micro", "f1_macro", "f1_samples", "map", "subset_accuracy", "hamming_loss"} <= set(
            report[split]["summary"]
        )
    assert (out / "pr_curves_test.png").is_file() and "threshold" in (out / "README.md").read_text()
    assert "multi_label: true" in (out / "hftransfer_config.yaml").read_text()
    results = json.loads((out / "all_results.json").read_text())
    assert results["test_f1_micro"] == pytest.approx(report["test"]["summary"]["f1_micro"])

    # pipeline applies a sigmoid per label (scores do not sum to 1); predict keeps the labels above threshold
    classifier = pipeline("text-classification", model=str(out), top_k=None, device="cpu")
    scores = {s["label"]: s["score"] for s in classifier(["we saw a goal and a pizza"])[0]}
    model = classifier.model
    with torch.no_grad():
        logits = model(**classifier.tokenizer("we saw a goal and a pizza", return_tensors="pt")).logits[0]
    for name, index in model.config.label2id.items():
        assert scores[name] == pytest.approx(torch.sigmoid(logits[index]).item(), abs=1e-5)
    [prediction] = predict_inputs(out, ["we saw a goal and a pizza"])
    expected = [n for n, s in sorted(scores.items(), key=lambda kv: -kv[1]) if s >= config["label_thresholds"][n]]
    assert prediction.labels == expected

    # eval on a file scores it at the saved thresholds: the training run's test figures again
    from hftransfer.artifacts.evaluate import evaluate_run

    evaluated, _ = evaluate_run(out, data=str(files["test"]))
    assert evaluated["summary"]["f1_micro"] == pytest.approx(report["test"]["summary"]["f1_micro"])


@pytest.mark.e2e
def test_image_multi_label_listing_trains_evaluates_and_exports(timm_weights, tmp_path):
    """Images made of a left and a right colour; their labels are the colours they contain."""
    pytest.importorskip("onnxruntime")
    from PIL import Image

    from hftransfer.artifacts.evaluate import evaluate_run
    from hftransfer.artifacts.export import export_run

    colours = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}
    rng = random.Random(0)

    def listing(name: str, n: int) -> str:
        rows = []
        for i in range(n):
            left, right = rng.choice(list(colours)), rng.choice(list(colours))
            image = Image.new("RGB", (48, 40), colours[left])
            image.paste(Image.new("RGB", (24, 40), colours[right]), (24, 0))
            path = tmp_path / "images" / f"{name}_{i}.png"
            path.parent.mkdir(exist_ok=True)
            image.save(path)
            rows.append({"image": f"images/{path.name}", "label": sorted({left, right})})
        return str(write_rows(tmp_path / f"{name}.jsonl", rows))

    out = tmp_path / "out"
    assert (
        main(
            [
                "--task",
                "image-classification",
                "--timm_arch",
                "test_efficientnet",
                "--weights",
                str(timm_weights),
                "--train_file",
                listing("train", 48),
                "--validation_file",
                listing("dev", 24),
                "--output_dir",
                str(out),
                "--max_steps",
                "4",
                "--per_device_train_batch_size",
                "12",
                "--strategy",
                "full",
                "--disable_tqdm",
                "true",
                "--dataloader_pin_memory",
                "false",
            ]
        )
        == 0
    )
    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification" and len(config["label_thresholds"]) == 3
    report, _ = evaluate_run(out)  # the run's own validation data, at the saved thresholds
    assert report["multi_label"] and report["thresholds"] == "the model's own"
    saved = json.loads((out / "eval_report.json").read_text())["validation"]["summary"]
    assert report["summary"]["f1_micro"] == pytest.approx(saved["f1_micro"])
    export_run(out)
    check = json.loads((out / "onnx" / "export_report.json").read_text())
    assert check["argmax_agreement"] == 1.0 and check["max_abs_diff"] <= 1e-4


def test_a_hub_sequence_of_class_labels_is_read_by_name():
    """A Hub dataset's ``Sequence(ClassLabel)`` label feature (ids into its names), as the Hub loader gives it."""
    from datasets import ClassLabel, Dataset, Features, List, Value

    from hftransfer.data.multilabel import encode

    features = Features({"text": Value("string"), "label": List(ClassLabel(names=["anger", "joy", "fear"]))})
    train = Dataset.from_dict({"text": ["a", "b", "c"], "label": [[1], [0, 2], []]}, features=features)
    data = encode({"train": train}, make_config(model="unused", train_file="unused.csv").data)
    assert data.multi_label and data.label_names == ["anger", "fear", "joy"]
    assert data.splits["train"]["labels"] == [[0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]


@pytest.mark.e2e
@pytest.mark.parametrize("strategy", ["linear_probe", "lp_ft", "lora"])
def test_every_strategy_trains_a_multi_label_head(tiny_bert, tmp_path, strategy):
    """The cached-feature probe, lp_ft's probe and LoRA train with the multi-label loss too."""
    files = {
        split: write_rows(tmp_path / f"{split}.jsonl", as_format(topic_rows(n, seed), "list"))
        for split, n, seed in (("train", 64, 1), ("validation", 32, 2))
    }
    out = tmp_path / strategy
    assert (
        main(
            [
                "--model",
                str(tiny_bert),
                "--output_dir",
                str(out),
                "--strategy",
                strategy,
                "--max_steps",
                "6",
                "--logging_steps",
                "1",
                "--per_device_train_batch_size",
                "16",
                "--disable_tqdm",
                "true",
                "--dataloader_pin_memory",
                "false",
                "--train_file",
                str(files["train"]),
                "--validation_file",
                str(files["validation"]),
                "--feature_cache_dir",
                str(tmp_path / "features"),
            ]
        )
        == 0
    )
    state = json.loads((out / "trainer_state.json").read_text())
    losses = [row["loss"] for row in state["log_history"] if "loss" in row]
    assert losses and all(np.isfinite(losses))
    report = json.loads((out / "eval_report.json").read_text())["validation"]
    assert report["multi_label"] and 0 <= report["summary"]["expected_calibration_error"] <= 1
    assert json.loads((out / "config.json").read_text())["problem_type"] == "multi_label_classification"


def _scored(n: int, labels: int, shift: float, seed: int = 1):
    """Targets (20% positive) and sigmoid scores that separate them; ``shift`` lowers every score (a model whose
    best threshold is far below 0.5)."""
    rng = np.random.default_rng(seed)
    targets = rng.random((n, labels)) < 0.2
    logits = np.where(targets, 2.0, -2.0) + rng.normal(0, 1.5, (n, labels)) - shift
    return targets, 1 / (1 + np.exp(-logits))


def test_a_small_validation_split_keeps_05_where_tuning_only_fits_its_noise():
    """Scores already centred on 0.5, 160 examples (the photo set where tuned thresholds cost 2 points): 0.5 stays."""
    choice = choose_thresholds(*_scored(160, 5, shift=0.0), "micro")
    assert choice.policy == "flat" and choice.confidence["global"] < 0.95, choice


def test_tuned_thresholds_are_kept_where_they_beat_05_beyond_chance():
    targets, scores = _scored(160, 5, shift=3.0)  # every score pushed down: 0.5 misses most positives
    choice = choose_thresholds(targets, scores, "micro")
    assert choice.policy == "global" and choice.out_of_fold["global"] > choice.out_of_fold["flat"] + 0.05, choice
    assert np.allclose(fitted("global", targets, scores, "micro"), fitted("global", targets, scores, "micro")[0])
    # labels of different scales: one global threshold cannot serve both, per-label thresholds win
    low, high = _scored(2000, 2, shift=2.5, seed=2), _scored(2000, 2, shift=-2.5, seed=3)
    mixed = (np.hstack([low[0], high[0]]), np.hstack([low[1], high[1]]))
    assert choose_thresholds(*mixed, "micro").policy == "per_label"
