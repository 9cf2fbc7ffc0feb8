"""Long-tailed labels and the data-fitted horizon: detection, logit adjustment folded into the head, the
class-weighted loss, the report's weakest classes, the fine-tuning horizon and the benchmark's messy variants."""

from __future__ import annotations

import json
import random
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import REPO, make_config, sentiment_rows, tiny_run_flags, write_rows
from datasets import Dataset

from hftransfer.data.balance import imbalance_ratio, train_class_counts
from hftransfer.engine import schedule
from hftransfer.engine.imbalance import (
    ADJUSTMENT_KEY,
    ClassWeightedLoss,
    adjust_for_priors,
    class_weighted_loss,
    prior_shift,
    resolve_imbalance,
    undo_prior_adjustment,
)
from hftransfer.evaluation.report import reduce_logits, weakest_classes
from hftransfer.training.recipe import main

sys.path.insert(0, str(REPO / "benchmarks"))
from messy_sets import flip_labels, long_tail_counts  # noqa: E402


def labelled(counts: list[int], multi_label: bool = False):
    labels = [c for c, n in enumerate(counts) for _ in range(n)]
    return SimpleNamespace(
        splits={"train": Dataset.from_dict({"labels": labels})},
        label_names=[f"class{c}" for c in range(len(counts))],
        multi_label=multi_label,
        streamed=False,
    )


def config_for(tmp_path, **options):
    train = write_rows(tmp_path / "train.csv", sentiment_rows(8))
    return make_config(model="unused", train_file=str(train), **options)


def test_a_long_tail_gets_logit_adjustment_and_a_balanced_set_nothing(tmp_path):
    tail, balanced = labelled([60, 30, 10]), labelled([40, 35, 30])
    assert imbalance_ratio(train_class_counts(tail)) == 6 and imbalance_ratio(np.array([3, 0, 1])) == 3
    config = config_for(tmp_path)
    resolve_imbalance(config, tail)
    assert config.transfer.imbalance == "logit_adjustment" and "imbalance ratio 6.0" in config.reasons["imbalance"]
    assert any(note.startswith("imbalance: logit_adjustment") for note in config.notes)
    config = config_for(tmp_path)
    resolve_imbalance(config, balanced)
    assert config.transfer.imbalance == "none" and "1.3" in config.reasons["imbalance"]
    assert any(note.startswith("imbalance: none") for note in config.notes)  # said in the config, card, summary
    config = config_for(tmp_path, imbalance="class_weights")
    resolve_imbalance(config, tail)
    assert config.transfer.imbalance == "class_weights"  # the user's choice is kept
    config = config_for(tmp_path)
    resolve_imbalance(config, labelled([60, 10], multi_label=True))
    assert config.transfer.imbalance == "none" and "pos_weight" in config.reasons["imbalance"]


def test_an_unknown_imbalance_names_the_choices(tmp_path):
    from hftransfer.config.options import ConfigError

    with pytest.raises(ConfigError, match="unknown imbalance 'balanced'; valid: auto, logit_adjustment"):
        config_for(tmp_path, imbalance="balanced")


def test_logit_adjustment_is_folded_into_the_bias_and_can_be_undone(tmp_path):
    """The adjusted model predicts argmax(logits - log prior); undoing it gives back the trained logits."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    model.config = SimpleNamespace()
    data = labelled([80, 15, 5])
    config = config_for(tmp_path, imbalance="logit_adjustment")
    x = torch.randn(50, 4)
    before = model(x).detach()
    shift = adjust_for_priors(config, model, data, {"0.weight", "0.bias"})
    after = model(x).detach()
    log_prior = np.log(np.array([80, 15, 5]) / 100)
    assert np.allclose(shift, log_prior - log_prior.mean())
    assert torch.allclose(after, before - torch.tensor(shift, dtype=torch.float32), atol=1e-6)
    assert (after.argmax(1) == 2).sum() > (before.argmax(1) == 2).sum()  # the rare class is predicted more
    assert getattr(model.config, ADJUSTMENT_KEY)["train_counts"] == [80, 15, 5]
    assert "logit adjustment" in config.outcomes[-1]
    assert undo_prior_adjustment(model, {"0.weight", "0.bias"}, 3)
    assert torch.allclose(model(x).detach(), before, atol=1e-6) and not hasattr(model.config, ADJUSTMENT_KEY)
    assert adjust_for_priors(config_for(tmp_path, imbalance="none"), model, data, {"0.bias"}) is None
    assert prior_shift(np.array([9, 0, 1]))[1] == 0  # a class train lacks is not raised above the others


def test_the_class_weighted_loss_weighs_every_class_alike(tmp_path):
    data = labelled([90, 10])
    loss = class_weighted_loss(config_for(tmp_path, imbalance="class_weights"), data)
    assert torch.allclose(loss.weight, torch.tensor([100 / 180, 100 / 20]))
    assert class_weighted_loss(config_for(tmp_path), data) is None  # auto is resolved before; unresolved: none
    logits, labels = torch.randn(6, 2), torch.tensor([0, 0, 0, 0, 1, 1])
    weight = torch.tensor([0.5, 3.0])
    expected = torch.nn.functional.cross_entropy(logits, labels, reduction="none") * weight[labels]
    got = ClassWeightedLoss(weight)({"logits": logits}, labels)
    assert torch.isclose(got, expected.mean())
    # under gradient accumulation: the sum over this micro-batch over the update's example count
    assert torch.isclose(ClassWeightedLoss(weight)({"logits": logits}, labels, 12), expected.sum() / 12)


def test_the_report_shows_the_weakest_classes_and_the_scores_before_adjustment():
    per_class = {
        "a": {"recall": 0.9, "support": 10},
        "b": {"recall": 0.2, "support": 5},
        "c": {"recall": 0.0, "support": 0},  # not in this split: not the weakest
        "d": {"recall": 0.5, "support": 4},
    }
    assert [c["class"] for c in weakest_classes(per_class, 2)] == ["b", "d"]
    logits = torch.tensor([[2.0, 1.5, 0.0], [0.0, 1.2, 1.5]])
    shift = np.array([1.0, 0.0, -1.0])  # the model's logits were lowered by it
    reduced = reduce_logits(logits, shift=shift)
    assert reduced.shape == (2, 7) and reduced[:, -1].tolist() == [0.0, 1.0]  # before: argmax(logits + shift)
    assert reduced[:, 0].tolist() == [0.0, 2.0] and reduce_logits(logits).shape == (2, 6)  # adjusted: the rare 2


def test_a_small_set_fine_tunes_for_a_floor_of_steps_and_stops_early(tmp_path):
    def data(n):
        return SimpleNamespace(splits={"train": list(range(n)), "validation": [0]}, multi_label=False, streamed=False)

    config = config_for(tmp_path)
    epochs = config.training.num_train_epochs
    chosen = schedule.fine_tuning_horizon(config, data(900), {})  # 29 steps an epoch at batch 32
    floor = min(-(-schedule.MIN_FINE_TUNING_STEPS // 29), schedule.MAX_HORIZON_FACTOR * epochs)
    epochs_chosen, reason = chosen["num_train_epochs"]
    assert epochs_chosen == floor > epochs and "29 optimiser steps an epoch" in reason
    assert chosen["early_stopping_patience"][0] == schedule.PATIENCE
    tiny = schedule.fine_tuning_horizon(config, data(32), {"num_train_epochs": (2, "lp_ft")})
    assert tiny["num_train_epochs"][0] == schedule.MAX_HORIZON_FACTOR * 2  # capped at 3x what was planned
    assert "num_train_epochs" not in schedule.fine_tuning_horizon(config, data(100_000), {})  # enough steps
    # the user's horizon is kept whole (no early stopping added); the user's patience is kept
    assert schedule.fine_tuning_horizon(config_for(tmp_path, num_train_epochs=2), data(900), {}) == {}
    assert schedule.fine_tuning_horizon(config_for(tmp_path, max_steps=50), data(900), {}) == {}
    patient = schedule.fine_tuning_horizon(config_for(tmp_path, early_stopping_patience=1), data(900), {})
    assert "num_train_epochs" in patient and "early_stopping_patience" not in patient


def test_the_benchmarks_messy_variants_have_a_ten_to_one_tail_and_the_noise_asked_for():
    counts = long_tail_counts({f"c{i}": 500 - i for i in range(24)}, head=120, ratio=10)
    assert max(counts.values()) == 120 and min(counts.values()) == 12
    assert long_tail_counts({"big": 50, "small": 5}, head=30, ratio=10) == {"big": 30, "small": 3}
    assert long_tail_counts({"big": 50, "small": 2}, head=30, ratio=10)["small"] == 2  # never more than it has
    rng = random.Random(0)
    labels = [rng.choice("abcde") for _ in range(1000)]
    flipped, rows = flip_labels(labels, 0.15, random.Random(1))
    changed = [i for i, (a, b) in enumerate(zip(labels, flipped)) if a != b]
    assert changed == rows and len(rows) == 150


@pytest.mark.e2e
def test_a_long_tailed_run_adjusts_reports_and_saves_its_choices(tiny_bert, tmp_path):
    """imbalance auto on a 4:1 training split: logit adjustment is chosen, folded into the saved model (its
    config records it), the metrics hold the scores before it, the card and summary say so."""
    rows = sentiment_rows(100, seed=1)
    positives = [r for r in rows if r["label"] == "positive"][:12]
    train = write_rows(tmp_path / "train.csv", [r for r in rows if r["label"] == "negative"][:48] + positives)
    test = write_rows(tmp_path / "test.csv", sentiment_rows(20, seed=3))
    out = tmp_path / "out"
    main(tiny_run_flags(tiny_bert, out, train=train, test=test) + ["--validation_fraction", "0.2"])
    saved = (out / "hftransfer_config.yaml").read_text()
    assert "imbalance: logit_adjustment" in saved and "imbalance ratio" in saved
    results = json.loads((out / "all_results.json").read_text())
    assert {"test_accuracy_before_adjustment", "test_f1_macro_before_adjustment", "test_worst_class_recall"} <= set(
        results
    )
    report = json.loads((out / "eval_report.json").read_text())["test"]
    assert report["weakest_classes"][0]["recall"] == results["test_worst_class_recall"]
    config = json.loads((out / "config.json").read_text())
    assert config[ADJUSTMENT_KEY]["train_counts"] == sorted(config[ADJUSTMENT_KEY]["train_counts"], reverse=True)
    card = (out / "README.md").read_text()
    assert "logit adjustment" in card and "Recall of the weakest class" in card


def test_label_smoothing_trains_a_probe_on_cached_features(tiny_bert, tmp_path):
    """Label smoothing (an option for noisy labels) with a probe on cached features: Trainer reads the problem type
    from the model's config, which the head-on-features module lacked (every such run failed)."""
    train = write_rows(tmp_path / "train.csv", sentiment_rows(40, seed=1))
    out = tmp_path / "out"
    main(
        tiny_run_flags(tiny_bert, out, train=train)
        + ["--strategy", "linear_probe", "--label_smoothing_factor", "0.1", "--feature_cache_dir", str(tmp_path / "f")]
    )
    assert "label_smoothing_factor: 0.1" in (out / "hftransfer_config.yaml").read_text()
