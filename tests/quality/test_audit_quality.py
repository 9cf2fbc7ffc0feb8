"""The audit on real, made-messy data: TREC-50 with 10% flipped training labels and 30 test questions copied into
train (benchmarks/audit.py's text set, seed 0; about a minute and a half on 2 CPU cores)."""

from __future__ import annotations

import sys

import pytest
from conftest import REPO, SHARED_DATA

sys.path.insert(0, str(REPO / "benchmarks"))

import audit as audit_benchmark  # noqa: E402

pytestmark = pytest.mark.slow


def test_audit_matches_plain_cleanlab_and_finds_every_planted_trec_leak(offline_checkpoints, tmp_path):
    """Plain cleanlab reads the classifier's head input, which for MiniLM is now the sentence encoder's own mean
    pooling (backbones/sentence_pooling.py): the 10-point lead the audit had over it came from the untrained pooler
    it read before (0.67 precision@K then, 0.87 now). The audit must stay at its level and find every leak."""
    if not (SHARED_DATA / "trec").is_dir():
        pytest.skip("../shared/data/trec is not here")
    result = audit_benchmark.measure("text", 0, tmp_path)
    ours, plain = result["audit"], result["cleanlab_baseline"]
    print("audit:", ours, "plain cleanlab:", plain)
    assert ours["precision_at_k"] >= plain["precision_at_k"] - 0.03 and ours["precision_at_k"] >= 0.80
    assert ours["recall_at_2k"] >= plain["recall_at_2k"] - 0.03 and ours["recall_at_2k"] >= 0.95
    assert result["leaks_found"] == result["leaks_planted"] == 30
    # TREC-50 itself holds 11 questions in both train and test (checked by eye); nothing else is called a leak
    assert result["unplanted_cross_split_count"] == 11
