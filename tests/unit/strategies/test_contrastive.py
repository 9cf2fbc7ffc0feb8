"""lp_ft's contrastive phase: batches that hold partners of one class, SetFit's pair loss, and auto's choice of it."""

from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from hftransfer.strategies.contrastive import ClassGroupedOrder, PairCosineLoss
from tests.conftest import refused, tiny_run_flags, write_rows


def test_each_pass_visits_every_example_once_in_groups_of_one_class():
    labels = np.array([0] * 9 + [1] * 5 + [2] * 2)
    order = ClassGroupedOrder(labels, per_class=4, seed=0)
    first, second = list(order), list(order)
    assert sorted(first) == list(range(len(labels))) == sorted(second)
    assert first != second  # a new order each pass
    runs, start = [], 0
    for end in range(1, len(first) + 1):  # split the order where the class changes
        if end == len(first) or labels[first[end]] != labels[first[start]]:
            runs.append(end - start)
            start = end
    # groups of up to 4 of one class: two groups of one class may follow each other, never a group split
    assert sum(runs) == len(labels) and len(runs) <= 3 + 2 + 1


def tiny_classifier():
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=2
    )
    return BertForSequenceClassification(config)


def pair_separation(model, inputs, labels) -> float:
    """Mean cosine of same-class pairs minus that of different-class pairs, at the head's input."""
    with torch.no_grad():
        vectors = torch.nn.functional.normalize(model.bert(**inputs).pooler_output, dim=-1)
    cosine = vectors @ vectors.T
    same = labels[:, None] == labels[None, :]
    others = ~torch.eye(len(labels), dtype=torch.bool)
    return (cosine[same & others].mean() - cosine[~same].mean()).item()


def test_the_pair_loss_pulls_one_class_together_and_pushes_others_apart():
    model = tiny_classifier()
    generator = torch.Generator().manual_seed(0)
    # class 0 uses tokens 10-29, class 1 tokens 30-49: separable, but the random encoder mixes them
    ids = torch.cat(
        [torch.randint(10, 30, (8, 6), generator=generator), torch.randint(30, 50, (8, 6), generator=generator)]
    )
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    labels = torch.tensor([0] * 8 + [1] * 8)
    before = pair_separation(model.eval(), inputs, labels)
    loss_model = PairCosineLoss(model.train())
    head = {id(p) for p in model.classifier.parameters()}
    optimizer = torch.optim.Adam([p for p in model.parameters() if id(p) not in head], lr=1e-3)
    head_before = model.classifier.weight.detach().clone()
    for _ in range(30):
        loss = loss_model(labels=labels, **inputs)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert pair_separation(model.eval(), inputs, labels) > before + 0.3
    assert torch.equal(model.classifier.weight, head_before)  # the head is the probe's to fit


def sentence_encoder(tiny_bert, folder):
    """The tiny BERT saved as a sentence-transformers checkpoint trained with mean pooling."""
    shutil.copytree(tiny_bert, folder)
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            ]
        )
    )
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    return folder


def few_shot_rows(per_class: int) -> list[dict]:
    """Texts whose words say nothing of their label: the frozen features do not separate the classes (auto's
    probe cannot pick linear_probe)."""
    words = "match goal bread soup laptop code river cloud".split()
    rng = np.random.default_rng(0)
    return [
        {"text": " ".join(rng.choice(words, 5)), "label": label}
        for label in ("sport", "food", "tech")
        for _ in range(per_class)
    ]


def test_auto_fine_tunes_a_sentence_encoder_on_pairs_first_with_few_examples(tmp_path, tiny_bert, caplog):
    from hftransfer.training.recipe import main

    caplog.set_level("INFO", logger="hftransfer")

    model = sentence_encoder(tiny_bert, tmp_path / "encoder")
    train = write_rows(tmp_path / "train.csv", few_shot_rows(8))
    flags = tiny_run_flags(model, tmp_path / "out", train=train)
    flags[flags.index("--strategy") + 1] = "auto"
    main([*flags, "--num_train_epochs", "2"])
    saved = (tmp_path / "out" / "hftransfer_config.yaml").read_text()
    epochs = int(re.search(r"^\s*contrastive_epochs: (\d+)", saved, re.M).group(1))
    assert "strategy: lp_ft" in saved
    assert epochs * math.ceil(19 / 16) >= 100  # 19 training examples (5 carved) in batches of 16: 100 steps at least
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["hftransfer_pooling"]["mode"] == "mean"
    assert "contrastive epochs / learning rate" in (tmp_path / "out" / "README.md").read_text()
    assert not (tmp_path / "out" / "contrastive").exists()  # its working folder is removed
    # the frozen-feature arm is measured beside it and kept when the contrastive body does not beat it
    assert "contrastive fine-tuning of the body on pairs" in caplog.text
    assert "the frozen body's probe is" in caplog.text


def test_a_contrastive_phase_on_multi_label_data_is_refused(tmp_path, tiny_bert):
    from hftransfer.training.recipe import main

    rows = [{"text": f"text {i}", "labels": "a;b" if i % 2 else "a"} for i in range(20)]
    train = write_rows(tmp_path / "train.csv", rows)
    flags = tiny_run_flags(tiny_bert, tmp_path / "out", train=train)
    flags[flags.index("--strategy") + 1] = "lp_ft"
    refused(
        lambda: main([*flags, "--contrastive_epochs", "2", "--label_column", "labels", "--label_separator", ";"]),
        "single-label",
    )


@pytest.mark.parametrize(
    ("frozen_score", "validation", "kept"),
    [(0.9, 200, "frozen"), (0.5, 200, "contrastive"), (0.75, 200, "contrastive"), (0.9, 6, "contrastive")],
)
def test_the_frozen_body_is_kept_when_shown_better_than_the_contrastive_one(
    monkeypatch, frozen_score, validation, kept
):
    from types import SimpleNamespace

    from hftransfer.strategies import probe

    model = tiny_classifier()
    pretrained = {k: v.clone() for k, v in model.state_dict().items()}
    scores = iter([frozen_score, 0.7])  # the frozen body's probe, then the contrastive body's

    def fake_probe(*_args, **_kwargs):
        return probe.ProbeResult({}, [], "probe step 3 of 5", next(scores))

    def ruin_body(ctx, *_args):
        with torch.no_grad():
            ctx.model.bert.embeddings.word_embeddings.weight.add_(1.0)

    monkeypatch.setattr(probe, "train_probe", fake_probe)
    monkeypatch.setattr(probe, "train_body_on_pairs", ruin_body)
    training = SimpleNamespace(learning_rate=1e-4, metric_for_best_model="accuracy", greater_is_better=True)
    ctx = SimpleNamespace(
        config=SimpleNamespace(training=training, explicit=set()),
        options=probe.ProbeOptions(contrastive_epochs=2),
        model=model,
        datasets={"train": None, "validation": [None] * validation},
    )
    result = probe.probe_phase(ctx, None)
    unchanged = torch.equal(
        model.bert.embeddings.word_embeddings.weight, pretrained["bert.embeddings.word_embeddings.weight"]
    )
    assert unchanged == (kept == "frozen")
    assert result.best_metric == (frozen_score if kept == "frozen" else 0.7)
    assert ("frozen body" in result.best) == (kept == "frozen")


@pytest.mark.parametrize(
    ("options", "by_steps"),
    [
        ({}, True),  # fine-tuning starts from the probed head: trained by steps, as before
        ({"contrastive_epochs": 2}, False),  # the contrastive body's head is fitted to the optimum
        ({"fine_tune_from_probe": False}, False),  # the fallback of fine-tuning from a fresh head
    ],
)
def test_the_probe_is_fitted_to_the_optimum_where_it_may_be_the_model(monkeypatch, options, by_steps):
    from types import SimpleNamespace

    from hftransfer.strategies import probe

    asked = []

    def fake_probe(*_args, **kwargs):
        asked.append(kwargs["by_steps"])
        return probe.ProbeResult({}, [], None, 0.5)

    monkeypatch.setattr(probe, "train_probe", fake_probe)
    monkeypatch.setattr(probe, "train_body_on_pairs", lambda *_args: None)
    training = SimpleNamespace(learning_rate=1e-4, metric_for_best_model="accuracy", greater_is_better=True)
    ctx = SimpleNamespace(
        config=SimpleNamespace(training=training, explicit=set()),
        options=probe.ProbeOptions(**options),
        model=tiny_classifier(),
        datasets={"train": None, "validation": [None] * 10},
    )
    probe.probe_phase(ctx, None)
    assert asked and set(asked) == {by_steps}
