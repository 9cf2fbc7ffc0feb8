"""Evaluation report, eval/predict/export/push commands, model card; tiny models, offline."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_class_folder, make_image, sentiment_rows, tiny_run_flags, write_rows
from huggingface_hub import ModelCard
from PIL import Image
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

import hftransfer.cli.main as cli
from hftransfer.evaluation.plots import DPI, confusion_figure_size, plot_confusion_matrix
from hftransfer.evaluation.report import (
    REPORT_FILE,
    Predictions,
    build_report,
    expected_calibration_error,
    reduce_logits,
)
from hftransfer.training.recipe import main

# --- the report's numbers ----------------------------------------------------------------------------------


def test_reduce_logits_keeps_top_k_ids_and_probabilities():
    logits = torch.tensor([[0.1, 3.0, -1.0, 0.5, 2.0, 0.0, 1.0], [5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    reduced = reduce_logits(logits)
    assert reduced.shape == (2, 10)  # 5 ids + 5 probabilities
    predictions = Predictions.from_reduced(reduced.numpy(), np.array([4, 0]))
    assert predictions.top_ids[0].tolist() == [1, 4, 6, 3, 0]
    assert predictions.confidence == pytest.approx(logits.softmax(-1).max(-1).values.numpy(), abs=1e-6)
    small = reduce_logits(torch.randn(3, 2))  # fewer classes than k
    assert small.shape == (3, 4)


def _reference_ece(confidence, correct, bins=15):
    """Guo et al.'s definition, written as a plain loop over examples."""
    total, ece = len(confidence), 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = [i for i, c in enumerate(confidence) if (low < c <= high) or (b == 0 and c == 0.0)]
        if members:
            accuracy = sum(correct[i] for i in members) / len(members)
            mean_conf = sum(confidence[i] for i in members) / len(members)
            ece += len(members) / total * abs(accuracy - mean_conf)
    return ece


def test_expected_calibration_error_matches_the_definition():
    rng = np.random.default_rng(0)
    confidence = np.concatenate([rng.uniform(0.3, 1.0, 500), [1.0, 2 / 15, 0.5]])  # edges included
    correct = rng.uniform(size=len(confidence)) < confidence**2
    ece, bins = expected_calibration_error(confidence, correct)
    assert ece == pytest.approx(_reference_ece(confidence.tolist(), correct.tolist()), abs=1e-12)
    assert sum(b["count"] for b in bins) == len(confidence)
    perfect, _ = expected_calibration_error(np.ones(10), np.ones(10, dtype=bool))
    assert perfect == 0.0


def test_report_equals_scikit_learn_and_ranks_errors():
    rng = np.random.default_rng(1)
    n, classes = 300, 7
    logits = torch.tensor(rng.normal(size=(n, classes)), dtype=torch.float32)
    labels = rng.integers(0, classes, n)
    logits[np.arange(n), labels] += 1.5  # better than chance
    predictions = Predictions.from_reduced(reduce_logits(logits).numpy(), labels)
    names = [f"c{i}" for i in range(classes)]
    report = build_report(predictions, names, examples=[f"x{i}" for i in range(n)])
    predicted = logits.argmax(-1).numpy()
    assert report["summary"]["accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    p, r, f, _ = precision_recall_fscore_support(labels, predicted, average="macro", zero_division=0)
    assert (
        report["summary"]["precision_macro"],
        report["summary"]["recall_macro"],
        report["summary"]["f1_macro"],
    ) == pytest.approx((p, r, f))
    assert report["confusion_matrix"]["matrix"] == confusion_matrix(labels, predicted).tolist()
    top5 = np.argsort(-logits.numpy(), axis=1)[:, :5]
    assert report["summary"]["top_5_accuracy"] == pytest.approx((top5 == labels[:, None]).any(1).mean())
    # the most confused pair is the largest off-diagonal cell
    matrix = np.array(report["confusion_matrix"]["matrix"])
    np.fill_diagonal(matrix, 0)
    assert report["most_confused"][0]["count"] == matrix.max()
    # worst errors: wrong, most confident first, named by their example
    worst = report["worst_errors"]
    confidences = [w["confidence"] for w in worst]
    assert confidences == sorted(confidences, reverse=True)
    assert all(w["true"] != w["predicted"] and w["example"] == f"x{w['index']}" for w in worst)
    wrong = predicted != labels
    assert worst[0]["confidence"] == pytest.approx(logits.softmax(-1).max(-1).values.numpy()[wrong].max())


@pytest.mark.e2e
@pytest.mark.parametrize("classes", [2, 30, 150])
def test_confusion_matrix_png_is_a_valid_image_of_the_expected_size(tmp_path, classes):
    rng = np.random.default_rng(0)
    matrix = np.diag(rng.integers(5, 20, classes)) + rng.integers(0, 2, (classes, classes))
    path = plot_confusion_matrix(matrix, [f"label number {i}" for i in range(classes)], tmp_path / "cm.png", "t")
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        shown = min(classes, 100)
        width, height = confusion_figure_size(shown)
        assert image.format == "PNG" and image.size == (round(width * DPI), round(height * DPI))
    assert not list(tmp_path.glob(".*partial"))


# --- a finished text run: report files, card, eval, predict ----------------------------------------------


@pytest.fixture(scope="module")
def text_run(tiny_bert, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("text-run")
    files = {
        "train": write_rows(root / "train.csv", sentiment_rows(64, seed=1)),
        "validation": write_rows(root / "dev.csv", sentiment_rows(21, seed=2)),
        "test": write_rows(root / "test.csv", sentiment_rows(15, seed=3)),
    }
    out = root / "out"
    main(tiny_run_flags(tiny_bert, out, **files))
    return out


@pytest.mark.e2e
def test_training_writes_report_plots_and_a_valid_card(text_run):
    report = json.loads((text_run / REPORT_FILE).read_text())
    assert set(report) == {"validation", "test"}
    for split, size in (("validation", 21), ("test", 15)):
        assert report[split]["num_examples"] == size
        assert {"summary", "per_class", "confusion_matrix", "most_confused", "worst_errors", "calibration"} <= set(
            report[split]
        )
        assert "expected_calibration_error" in report[split]["summary"]
        with Image.open(text_run / f"confusion_matrix_{split}.png") as image:
            assert image.size == tuple(round(v * DPI) for v in confusion_figure_size(2))
    assert (text_run / "training_curves.png").is_file()
    results = json.loads((text_run / "all_results.json").read_text())
    assert report["test"]["summary"]["accuracy"] == pytest.approx(results["test_accuracy"])

    card = ModelCard.load(text_run / "README.md")  # parses the metadata, model-index included
    assert card.data.pipeline_tag == "text-classification" and card.data.library_name == "transformers"
    values = {(r.dataset_split, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert values[("test", "Accuracy")] == pytest.approx(results["test_accuracy"], abs=1e-4)
    text = card.text
    for expected in (
        'pipeline("text-classification"',
        "`negative`, `positive`",
        "strategy",
        "Per class",
        "confusion_matrix_validation.png",
        "Limitations",
    ):
        assert expected in text, expected


@pytest.mark.e2e
def test_eval_command_on_a_file_matches_the_training_report(text_run, capsys):
    test_file = text_run.parent / "test.csv"
    assert cli.main(["eval", str(text_run), "--data", str(test_file)]) == 0
    folder = text_run / "eval" / "test"
    report = json.loads((folder / REPORT_FILE).read_text())["test"]
    trained = json.loads((text_run / REPORT_FILE).read_text())["test"]
    assert report["summary"] == pytest.approx(trained["summary"])
    assert report["confusion_matrix"] == trained["confusion_matrix"]
    assert (folder / "confusion_matrix_test.png").is_file()
    assert "f1_macro" in capsys.readouterr().out
    # a second evaluation into the same folder must be asked for
    assert cli.main(["eval", str(text_run), "--data", str(test_file)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["eval", str(text_run), "--data", str(test_file), "--overwrite"]) == 0


def test_eval_refuses_unknown_labels_and_non_model_dirs(text_run, tmp_path, capsys):
    other = write_rows(tmp_path / "other.csv", sentiment_rows(6, labels=("negative", "neutral")))
    assert cli.main(["eval", str(text_run), "--data", str(other)]) == 2
    err = capsys.readouterr().err
    assert "'neutral'" in err and "negative, positive" in err
    assert not (text_run / "eval" / "other").exists()  # nothing partially written
    (tmp_path / "empty").mkdir()
    for bad in (tmp_path / "empty", tmp_path / "missing"):
        assert cli.main(["eval", str(bad)]) == 2
        assert "model directory" in capsys.readouterr().err


def test_predict_texts_to_terminal_csv_and_json(text_run, tmp_path, capsys):
    assert cli.main(["predict", str(text_run), "a wonderful film", "--top_k", "2"]) == 0
    assert "a wonderful film" in capsys.readouterr().out
    texts = write_rows(tmp_path / "texts.csv", [{"review": "great", "x": 1}, {"review": "dull and boring", "x": 2}])
    out_csv = tmp_path / "p.csv"
    assert (
        cli.main(["predict", str(text_run), "--csv", str(texts), "--column", "review", "--output", str(out_csv)]) == 0
    )
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["input"] for r in rows] == ["great", "dull and boring"]
    assert {r["label_1"] for r in rows} <= {"negative", "positive"}
    assert float(rows[0]["score_1"]) >= float(rows[0]["score_2"])
    lines = tmp_path / "lines.txt"
    lines.write_text("one\n\ntwo\n")
    out_json = tmp_path / "p.json"
    assert cli.main(["predict", str(text_run), "--text_file", str(lines), "--output", str(out_json)]) == 0
    rows = json.loads(out_json.read_text())
    assert [r["input"] for r in rows] == ["one", "two"]
    assert sum(p["score"] for p in rows[0]["predictions"]) == pytest.approx(1.0, abs=1e-5)
    # an existing output is not overwritten unless asked; bad inputs are named
    assert cli.main(["predict", str(text_run), "x", "--output", str(out_json)]) == 2
    assert cli.main(["predict", str(text_run), "--csv", str(texts), "--column", "nope"]) == 2
    assert "'nope'" in capsys.readouterr().err


@pytest.mark.e2e
def test_export_onnx_text_and_predict_with_it(text_run, capsys):
    assert cli.main(["export", str(text_run), "--format", "onnx"]) == 0
    check = json.loads((text_run / "onnx" / "export_report.json").read_text())
    assert check["max_abs_diff"] <= 1e-4 and check["argmax_agreement"] == 1.0
    assert "validation data" in check["inputs"]  # checked on the run's real examples
    from hftransfer.artifacts.predict import predict_inputs as predict

    texts = ["a wonderful and moving film", "dull", "the plot with some actors and a story that goes on and on"]
    torch_out = predict(text_run, texts, top_k=2)
    onnx_out = predict(text_run, texts, top_k=2, onnx=True)
    for a, b in zip(torch_out, onnx_out):
        assert a.labels == b.labels and a.scores == pytest.approx(b.scores, abs=1e-5)
    assert cli.main(["export", str(text_run)]) == 2  # exists: must be asked to overwrite
    assert cli.main(["export", str(text_run), "--overwrite"]) == 0


# --- images -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_run(timm_weights, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("image-run")
    for split in ("train", "val"):
        make_class_folder(root / "data" / split, 6 if split == "train" else 3)
    out = root / "out"
    main(
        [
            "--task",
            "image-classification",
            "--timm_arch",
            "test_efficientnet",
            "--weights",
            str(timm_weights),
            "--strategy",
            "full",
            "--data_dir",
            str(root / "data"),
            "--output_dir",
            str(out),
            "--num_train_epochs",
            "1",
            "--disable_tqdm",
            "true",
            "--per_device_train_batch_size",
            "4",
        ]
    )
    return out


@pytest.mark.e2e
def test_image_run_report_names_files_and_predict_reads_folders_and_globs(image_run, tmp_path, capsys):
    report = json.loads((image_run / REPORT_FILE).read_text())["validation"]
    assert report["num_examples"] == 6
    for error in report["worst_errors"]:
        assert Path(error["example"]).is_file()
    data = image_run.parent / "data" / "val"
    out = tmp_path / "p.jsonl"
    assert (
        cli.main(["predict", str(image_run), str(data / "red"), str(data / "blue" / "*.png"), "--output", str(out)])
        == 0
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6 and rows[0]["input"].endswith("red_0.png")
    # the same model through `hftransfer eval` on the folder's val split gives the training report's numbers
    assert cli.main(["eval", str(image_run), "--data", str(image_run.parent / "data"), "--split", "val"]) == 0
    again = json.loads((image_run / "eval" / "data-validation" / REPORT_FILE).read_text())["validation"]
    assert again["summary"] == pytest.approx(report["summary"])
    # predictions agree with the report's confusion matrix
    predicted = [r["predictions"][0]["label"] for r in rows]
    truth = ["red"] * 3 + ["blue"] * 3
    names = report["confusion_matrix"]["labels"]
    assert confusion_matrix(truth, predicted, labels=names).tolist() == report["confusion_matrix"]["matrix"]


def test_predict_reports_unreadable_and_missing_images(image_run, tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    good = make_image(tmp_path / "ok.png", (200, 10, 10))
    assert cli.main(["predict", str(image_run), str(good), str(broken)]) == 2
    assert "broken.jpg" in capsys.readouterr().err
    assert cli.main(["predict", str(image_run), str(tmp_path / "nope.png")]) == 2
    assert "nope.png" in capsys.readouterr().err
    assert cli.main(["predict", str(image_run), str(tmp_path / "*.gif")]) == 2
    assert "matches no file" in capsys.readouterr().err


# --- the Hub ------------------------------------------------------------------------------------------------


class FakeHub:
    """Records the calls made at the HfApi boundary (the Hub is unreachable here)."""

    def __init__(self, monkeypatch):
        import huggingface_hub

        self.calls = []
        hub = self

        class RepoUrl(str):
            repo_id = "someone/tiny-text"

        def create_repo(api, repo_id, **kwargs):
            hub.calls.append(("create_repo", repo_id, kwargs))
            return RepoUrl(f"https://huggingface.co/{repo_id}")

        def upload_folder(api, **kwargs):
            from huggingface_hub.utils import filter_repo_objects

            root = Path(kwargs["folder_path"])
            every = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
            kwargs["uploaded"] = list(
                filter_repo_objects(
                    every, allow_patterns=kwargs.get("allow_patterns"), ignore_patterns=kwargs.get("ignore_patterns")
                )
            )
            kwargs["token"] = api.token
            hub.calls.append(("upload_folder", kwargs["repo_id"], kwargs))
            return "https://huggingface.co/someone/tiny-text/commit/abc"

        monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
        monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)


def test_push_uploads_the_model_folder_only(text_run, monkeypatch, capsys):
    hub = FakeHub(monkeypatch)
    monkeypatch.setenv("HF_TOKEN", "hf_testtoken123")
    assert cli.main(["push", str(text_run), "--repo-id", "tiny-text", "--private"]) == 0
    (_, repo, create), (_, repo_up, upload) = hub.calls
    assert repo == "tiny-text" and create["private"] is True and create["exist_ok"] is True
    assert repo_up == "someone/tiny-text" and upload["token"] == "hf_testtoken123"
    uploaded = upload["uploaded"]
    for needed in (
        "config.json",
        "model.safetensors",
        "README.md",
        "tokenizer.json",
        REPORT_FILE,
        "confusion_matrix_validation.png",
        "hftransfer_config.yaml",
    ):
        assert needed in uploaded, needed
    assert not [f for f in uploaded if f.startswith(("checkpoint-", "eval/", ".")) or f.endswith(".bin")], uploaded
    assert "hf_testtoken123" not in capsys.readouterr().out
    # the uploaded folder is a working model: it loads with pipeline, its card parses
    from transformers import pipeline

    assert pipeline("text-classification", model=str(text_run), device="cpu")("great")[0]["label"] in {
        "negative",
        "positive",
    }


def test_push_refuses_without_login_or_with_a_token_in_the_folder(text_run, monkeypatch, capsys):
    import hftransfer.training.hub

    hub = FakeHub(monkeypatch)
    monkeypatch.setattr(hftransfer.training.hub, "get_token", lambda: None)
    assert cli.main(["push", str(text_run)]) == 2
    assert "hf auth login" in capsys.readouterr().err
    monkeypatch.setattr(hftransfer.training.hub, "get_token", lambda: "hf_leakedtoken")
    leak = text_run / "notes.txt"
    leak.write_text("token: hf_leakedtoken")
    try:
        assert cli.main(["push", str(text_run)]) == 2
        assert "notes.txt" in capsys.readouterr().err
    finally:
        leak.unlink()
    assert hub.calls == []  # nothing reached the Hub


@pytest.mark.e2e
def test_push_to_hub_option_pushes_once_after_training(tiny_bert, text_files, tmp_path, monkeypatch):
    hub = FakeHub(monkeypatch)
    monkeypatch.setenv("HF_TOKEN", "hf_testtoken123")
    out = tmp_path / "pushed"
    main(tiny_run_flags(tiny_bert, out, **text_files) + ["--push_to_hub", "true", "--hub_model_id", "me/tiny"])
    assert [c[0] for c in hub.calls] == ["create_repo", "upload_folder"]
    assert hub.calls[0][1] == "me/tiny"
    assert "README.md" in hub.calls[1][2]["uploaded"]
    assert "hf_testtoken123" not in (out / "hftransfer_config.yaml").read_text()


def test_push_to_hub_without_login_fails_before_training(tiny_bert, text_files, tmp_path, monkeypatch):
    import hftransfer.training.hub

    monkeypatch.setattr(hftransfer.training.hub, "get_token", lambda: None)
    from hftransfer.training.hub import PushError

    with pytest.raises(PushError, match="hf auth login"):
        main(tiny_run_flags(tiny_bert, tmp_path / "o", **text_files) + ["--push_to_hub", "true"])
    assert not (tmp_path / "o").exists()


def test_eval_labels_match_the_model_by_name_or_by_id():
    from datasets import Dataset

    from hftransfer.data.labels import encode_labels_for_model
    from hftransfer.data.tables import DataError

    names = ["negative", "positive"]
    ids = Dataset.from_dict({"label": [0, 1, 1]})  # trained with class_names over integer labels (SST-2 files)
    assert encode_labels_for_model({"t": ids}, "label", names).splits["t"]["labels"] == [0, 1, 1]
    named = Dataset.from_dict({"label": ["positive", "negative"]})
    assert encode_labels_for_model({"t": named}, "label", names).splits["t"]["labels"] == [1, 0]
    digits = Dataset.from_dict({"label": [7, 3]})  # trained on integer labels without names: labels "3", "7"
    assert encode_labels_for_model({"t": digits}, "label", ["3", "7"]).splits["t"]["labels"] == [1, 0]
    with pytest.raises(DataError, match="'9'.*negative, positive"):
        encode_labels_for_model({"t": Dataset.from_dict({"label": [9]})}, "label", names)
