"""Temperature scaling: fitted on validation logits, folded into the classifier, predictions unchanged."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from conftest import sentiment_rows, tiny_run_flags, write_rows
from torch import nn

from hftransfer.evaluation.calibration import (
    SIGNIFICANT_CHI2,
    classifier_layers,
    fit_temperature,
    fold_temperature,
    likelihood_ratio,
)
from hftransfer.evaluation.report import expected_calibration_error
from hftransfer.training.recipe import main


def test_the_fitted_temperature_is_the_one_that_made_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(20000, 5))
    true_temperature = 2.5  # labels drawn from softmax(logits / 2.5): the logits are overconfident by 2.5
    probabilities = torch.softmax(torch.tensor(logits / true_temperature), -1).numpy()
    labels = np.array([rng.choice(5, p=p) for p in probabilities])
    assert fit_temperature(logits, labels) == pytest.approx(true_temperature, rel=0.05)


def test_a_temperature_is_significant_only_where_the_scores_are_off():
    """The likelihood-ratio test that decides whether a fitted T is folded in: a calibrated model's fitted T (labels
    drawn from its own softmax) cannot be told from 1; an overconfident one's can, on as few examples."""
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=3.0, size=(300, 5))

    def labels_at(temperature):
        probabilities = torch.softmax(torch.tensor(logits / temperature), -1).numpy()
        return np.array([rng.choice(5, p=p) for p in probabilities])

    calibrated, overconfident = labels_at(1.0), labels_at(2.0)
    fitted = fit_temperature(logits, calibrated)
    assert fitted != 1.0 and 0 <= likelihood_ratio(logits, calibrated, fitted) < SIGNIFICANT_CHI2
    assert likelihood_ratio(logits, overconfident, fit_temperature(logits, overconfident)) > 10 * SIGNIFICANT_CHI2


def test_folding_keeps_every_prediction_and_lowers_the_ece_of_an_overconfident_model():
    torch.manual_seed(0)
    features = torch.randn(3000, 16)
    truth = nn.Linear(16, 4)
    labels = torch.distributions.Categorical(logits=truth(features).detach()).sample()
    model = nn.Sequential(nn.Identity(), nn.Linear(16, 4))
    with torch.no_grad():  # the right direction, eight times too sure of itself
        model[1].weight.copy_(truth.weight * 8)
        model[1].bias.copy_(truth.bias * 8)
    validation, test = slice(0, 1500), slice(1500, 3000)

    def ece(logits, y):
        probabilities = logits.softmax(-1)
        return expected_calibration_error(
            probabilities.max(-1).values.numpy(), (probabilities.argmax(-1) == y).numpy()
        )[0]

    with torch.no_grad():
        before = model(features)
    layers = classifier_layers(model, {"1.weight", "1.bias"}, 4)
    assert layers == [model[1]]
    temperature = fit_temperature(before[validation].numpy(), labels[validation].numpy())
    fold_temperature(layers, temperature)
    with torch.no_grad():
        after = model(features)
    assert temperature > 4
    assert torch.equal(after.argmax(-1), before.argmax(-1))
    torch.testing.assert_close(after, before / temperature, rtol=1e-5, atol=1e-6)
    assert ece(after[test], labels[test]) < 0.05 < ece(before[test], labels[test])


@pytest.mark.e2e
def test_a_run_saves_a_calibrated_model_and_reports_before_and_after(tiny_bert, tmp_path, monkeypatch, caplog):
    from hftransfer.engine.trainer import ClassificationTrainer

    files = {
        "train": write_rows(tmp_path / "train.csv", sentiment_rows(96, seed=1)),
        "validation": write_rows(tmp_path / "dev.csv", sentiment_rows(40, seed=2)),
        "test": write_rows(tmp_path / "test.csv", sentiment_rows(30, seed=3)),
    }
    out = tmp_path / "out"
    predicted = []
    real_predict = ClassificationTrainer.predict
    monkeypatch.setattr(
        ClassificationTrainer,
        "predict",
        lambda self, dataset, *a, metric_key_prefix="test", **k: (
            predicted.append(metric_key_prefix),
            real_predict(self, dataset, *a, metric_key_prefix=metric_key_prefix, **k),
        )[1],
    )
    # long and fast enough that the model is sure of itself and far from calibrated (T is significant)
    with caplog.at_level(logging.INFO, logger="hftransfer"):
        main(tiny_run_flags(tiny_bert, out, **files) + ["--num_train_epochs", "5", "--learning_rate", "3e-3"])
    assert predicted == ["calibration", "test"]  # the validation split is read once: calibration's logits are scored
    after = float(caplog.text.split("validation examples (NLL ")[1].split(" → ")[1].split(")")[0])
    assert json.loads((out / "all_results.json").read_text())["eval_loss"] == pytest.approx(after, abs=1e-4)
    temperature = json.loads((out / "config.json").read_text())["hftransfer_calibration"]["temperature"]
    report = json.loads((out / "eval_report.json").read_text())
    for split in ("validation", "test"):
        assert report[split]["temperature"] == pytest.approx(temperature)
        assert {"expected_calibration_error", "expected_calibration_error_before"} <= set(report[split]["summary"])
        assert sum(b["count"] for b in report[split]["calibration_before"]["bins"]) == report[split]["num_examples"]
    results = json.loads((out / "all_results.json").read_text())
    assert (
        results["test_expected_calibration_error_before"]
        == report["test"]["summary"]["expected_calibration_error_before"]
    )
    assert "T = " in (out / "README.md").read_text()
    # off: no temperature anywhere, the same predictions
    plain = tmp_path / "plain"
    main(
        tiny_run_flags(tiny_bert, plain, **files)
        + ["--num_train_epochs", "5", "--learning_rate", "3e-3", "--calibrate", "false"]
    )
    assert "hftransfer_calibration" not in json.loads((plain / "config.json").read_text())
    plain_report = json.loads((plain / "eval_report.json").read_text())
    for split in ("validation", "test"):
        assert "temperature" not in plain_report[split]
        assert plain_report[split]["summary"]["accuracy"] == report[split]["summary"]["accuracy"]
        assert plain_report[split]["summary"]["expected_calibration_error"] == pytest.approx(
            report[split]["summary"]["expected_calibration_error_before"], abs=1e-5
        )  # float32 rounding only
    # plain `pipeline` on the saved model gives the calibrated scores: softmax(logits / T) of the same training
    from transformers import pipeline

    texts = ["a wonderful film", "dull and tedious"]
    calibrated = pipeline("text-classification", model=str(out), device="cpu", top_k=None)(texts)
    raw = pipeline("text-classification", model=str(plain), device="cpu", top_k=None, function_to_apply="none")(texts)
    for scores, logits in zip(calibrated, raw):
        expected = torch.softmax(torch.tensor([s["score"] for s in logits]) / temperature, -1)
        got = {s["label"]: s["score"] for s in scores}
        assert [got[s["label"]] for s in logits] == pytest.approx(expected.tolist(), abs=1e-5)


@pytest.mark.e2e
def test_a_temperature_the_validation_cannot_tell_from_one_is_not_applied(tiny_bert, tmp_path):
    """One epoch of the tiny model: its scores carry almost nothing, any T fits the validation labels as well as 1
    does; the model keeps its raw scores and the run says why."""
    files = {
        "train": write_rows(tmp_path / "train.csv", sentiment_rows(96, seed=1)),
        "validation": write_rows(tmp_path / "dev.csv", sentiment_rows(40, seed=2)),
    }
    out = tmp_path / "out"
    main(tiny_run_flags(tiny_bert, out, **files))
    assert "hftransfer_calibration" not in json.loads((out / "config.json").read_text())
    assert "temperature" not in json.loads((out / "eval_report.json").read_text())["validation"]
    assert "temperature scaling: not applied" in (out / "hftransfer_config.yaml").read_text()
