"""Transferability scores and `hftransfer rank` (tiny models for wiring; real-data rankings in test_quality)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_config, sentiment_rows, write_rows
from transformers import AutoConfig

import hftransfer.cli.main as cli
from hftransfer.evaluation.transferability import h_score, knn_accuracy, linear_probe_accuracy, logme
from hftransfer.selection.rank import RankError
from hftransfer.selection.rank import rank_candidates as rank
from hftransfer.strategies.auto import body_to_head_rate, decide
from hftransfer.tasks import get_task


def reference_logme(features: np.ndarray, labels: np.ndarray) -> float:
    """The paper's Algorithm 1 as written: per class, explicit A, its inverse and log-determinant."""
    f = features.astype(np.float64)
    n, d = f.shape
    gram, eigenvalues = f.T @ f, np.linalg.eigvalsh(f.T @ f).clip(0)
    evidences = []
    for k in np.unique(labels):
        y = (labels == k).astype(np.float64)
        alpha, beta = 1.0, 1.0
        for _ in range(1000):
            a = alpha * np.eye(d) + beta * gram
            m = beta * np.linalg.inv(a) @ f.T @ y
            gamma = float((beta * eigenvalues / (alpha + beta * eigenvalues)).sum())
            new_alpha, new_beta = gamma / (m @ m), (n - gamma) / np.sum((f @ m - y) ** 2)
            converged = abs(new_alpha / new_beta - alpha / beta) <= 1e-12 * (alpha / beta)
            alpha, beta = new_alpha, new_beta
            if converged:
                break
        a = alpha * np.eye(d) + beta * gram
        m = beta * np.linalg.inv(a) @ f.T @ y
        evidence = (
            n / 2 * np.log(beta)
            + d / 2 * np.log(alpha)
            - n / 2 * np.log(2 * np.pi)
            - beta / 2 * np.sum((f @ m - y) ** 2)
            - alpha / 2 * (m @ m)
            - np.linalg.slogdet(a)[1] / 2
        )
        evidences.append(evidence / n)
    return float(np.mean(evidences))


@pytest.mark.parametrize("n,d,classes", [(80, 12, 3), (200, 8, 5), (30, 50, 4)])  # n > d and n < d
def test_logme_matches_the_papers_evidence_maximisation(n, d, classes):
    # Features that carry every class, so each class's evidence has a finite maximum (for a class they do not
    # predict, alpha grows without bound and the evidence tends to its w = 0 limit).
    rng = np.random.default_rng(n + d)
    labels = rng.integers(0, classes, n)
    features = rng.normal(size=(n, d)) + np.eye(classes, d)[labels] * 1.5
    fast = logme(features, labels, tolerance=1e-12, max_iterations=1000)
    # 1e-6: the reference inverts A explicitly, which loses digits when d > n (A nearly singular in beta F^T F)
    assert fast == pytest.approx(reference_logme(features, labels), rel=1e-6)
    assert logme(features, labels) == pytest.approx(fast, rel=1e-6)  # the default tolerance is converged too


def test_logme_is_invariant_to_sample_order_and_rewards_separable_features():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 200)
    informative = rng.normal(size=(200, 16)) + np.eye(3, 16)[labels] * 3
    order = rng.permutation(200)
    assert logme(informative[order], labels[order]) == pytest.approx(logme(informative, labels), rel=1e-10)
    noise = rng.normal(size=(200, 16))
    assert logme(informative, labels) > logme(noise, labels) + 0.1
    assert h_score(informative, labels) > h_score(noise, labels)
    assert h_score(informative[order], labels[order]) == pytest.approx(h_score(informative, labels), rel=1e-9)
    train, test = slice(0, 150), slice(150, 200)
    assert knn_accuracy(informative[train], labels[train], informative[test], labels[test]) >= 0.9
    assert linear_probe_accuracy(informative[train], labels[train], informative[test], labels[test]) >= 0.9
    assert knn_accuracy(noise[train], labels[train], noise[test], labels[test]) < 0.6


# --- hftransfer rank on tiny models ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def second_tiny_bert(tiny_bert, tmp_path_factory) -> Path:
    """The tiny BERT's architecture with other random weights: a second candidate."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert-2")
    torch.manual_seed(1)
    BertModel(AutoConfig.from_pretrained(tiny_bert)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(folder)
    return folder


@pytest.fixture
def rank_files(tmp_path) -> dict[str, Path]:
    return {
        "train_file": write_rows(tmp_path / "train.csv", sentiment_rows(60, seed=1)),
        "validation_file": write_rows(tmp_path / "dev.csv", sentiment_rows(20, seed=2)),
    }


@pytest.mark.e2e
def test_rank_scores_candidates_skips_broken_ones_and_writes_reports(
    tiny_bert, second_tiny_bert, rank_files, tmp_path, capsys
):
    report_dir = tmp_path / "rank"
    argv = [
        "rank",
        "--model",
        str(tiny_bert),
        "--models",
        str(second_tiny_bert),
        str(tmp_path / "no-such-model"),
        "--train_file",
        str(rank_files["train_file"]),
        "--validation_file",
        str(rank_files["validation_file"]),
        "--sample_size",
        "40",
        "--report_dir",
        str(report_dir),
        "--feature_cache_dir",
        str(tmp_path / "cache"),
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "LogME" in out and "skipped" in out
    report = json.loads((report_dir / "rank_report.json").read_text())
    rows = report["candidates"]
    assert [r["rank"] for r in rows] == [1, 2, None]
    assert rows[2]["model"].endswith("no-such-model") and rows[2]["error"]
    scored = rows[:2]
    assert scored[0]["logme"] >= scored[1]["logme"]
    per_class = float(np.median(pd.read_csv(rank_files["train_file"])["label"].value_counts()))
    ratio = body_to_head_rate(
        make_config(model=str(tiny_bert)), get_task("text-classification"), AutoConfig.from_pretrained(tiny_bert)
    )
    for row in scored:
        assert {"knn_accuracy", "linear_probe_accuracy", "h_score", "parameters", "features_per_second"} <= set(row)
        # one policy: what strategy auto decides from the probe accuracy rank measured (on 20 validation rows)
        assert (row["recommended_strategy"], row["recommendation_reason"]) == decide(
            60, 2, per_class, row["linear_probe_accuracy"], 20, ratio
        )
    assert report["sample"].startswith("train 40, validation 20")
    assert (report_dir / "rank_plot.png").stat().st_size > 1000
    assert cli.main(argv) == 2  # an earlier ranking is not replaced unless asked
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.e2e
def test_rank_then_train_fine_tunes_the_winner(tiny_bert, second_tiny_bert, rank_files, tmp_path):
    out = tmp_path / "winner"
    argv = [
        "rank",
        "--model",
        str(tiny_bert),
        "--models",
        str(second_tiny_bert),
        "--then_train",
        "--train_file",
        str(rank_files["train_file"]),
        "--validation_file",
        str(rank_files["validation_file"]),
        "--sample_size",
        "40",
        "--report_dir",
        str(tmp_path / "rank"),
        "--output_dir",
        str(out),
        "--num_train_epochs",
        "1",
        "--disable_tqdm",
        "true",
        "--feature_cache_dir",
        str(tmp_path / "cache"),
    ]
    assert cli.main(argv) == 0
    best = json.loads((tmp_path / "rank" / "rank_report.json").read_text())["candidates"][0]
    saved = json.loads((out / "config.json").read_text())
    assert saved["id2label"] == {"0": "negative", "1": "positive"}
    recorded = (out / "hftransfer_config.yaml").read_text()
    assert "ranked first by hftransfer rank" in recorded and best["model"] in recorded
    chosen = recorded.split("auto chose ")[1].split(":")[0]  # auto decided in the run, with its own options
    assert f"strategy: {chosen}" in recorded


def test_rank_bad_input(tiny_bert, second_tiny_bert, rank_files, tmp_path):
    files = {k: str(v) for k, v in rank_files.items()}
    with pytest.raises(RankError, match="at least two candidates"):
        rank(make_config(model=str(tiny_bert), **files), [])
    one_class = write_rows(
        tmp_path / "one.csv", [{"text": f"t {i}", "label": "a"} for i in range(10)] + [{"text": "u", "label": "b"}]
    )
    one_dev = write_rows(tmp_path / "one_dev.csv", [{"text": "t", "label": "a"}, {"text": "u", "label": "b"}])
    with pytest.raises(RankError, match="too few examples per class"):
        rank(
            make_config(model=str(tiny_bert), train_file=str(one_class), validation_file=str(one_dev)),
            [str(second_tiny_bert)],
        )
    with pytest.raises(RankError, match="sample_size"):
        rank(make_config(model=str(tiny_bert), **files), [str(second_tiny_bert)], sample_size=1)
