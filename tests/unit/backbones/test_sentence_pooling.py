"""A sentence encoder is pooled as it was trained, inside a plain transformers classifier (no custom code)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
)

from hftransfer.backbones.sentence_pooling import (
    CONFIG_KEY,
    POOLER_GAIN,
    PoolingError,
    pool_as_trained,
    trained_pooling,
)


def sentence_folder(tmp_path, **modes) -> str:
    (tmp_path / "1_Pooling").mkdir(parents=True, exist_ok=True)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    config = {"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": False}
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({**config, **modes}))
    return str(tmp_path)


@pytest.mark.parametrize(
    ("modes", "expected"),
    [
        ({"pooling_mode_mean_tokens": True}, "mean"),
        ({"pooling_mode_cls_token": True}, "cls"),
        ({"pooling_mode_max_tokens": True}, None),  # another pooling: the model's own head input is kept
        ({"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True}, None),
    ],
)
def test_the_pooling_a_sentence_encoder_was_trained_with_is_read(tmp_path, modes, expected):
    mode, reason = trained_pooling(sentence_folder(tmp_path, **modes))
    assert mode == expected
    assert reason


def test_a_plain_checkpoint_keeps_its_head_input(tmp_path):
    assert trained_pooling(str(tmp_path)) == (None, "no modules.json: not a sentence-transformers checkpoint")
    assert trained_pooling(None)[0] is None


def test_a_hub_checkpoint_reads_its_pooling_files_through_the_fetcher(tmp_path):
    folder = sentence_folder(tmp_path, pooling_mode_mean_tokens=True)
    asked = []

    def fetch(name):
        asked.append(name)
        return f"{folder}/{name}"

    assert trained_pooling(None, fetch)[0] == "mean"
    assert asked == ["modules.json", "1_Pooling/config.json"]


def test_unreadable_pooling_files_are_named(tmp_path):
    (tmp_path / "modules.json").write_text("{not json")
    with pytest.raises(PoolingError, match="modules.json"):
        trained_pooling(str(tmp_path))
    (tmp_path / "modules.json").write_text("{}")
    with pytest.raises(PoolingError, match="not the list of modules"):
        trained_pooling(str(tmp_path))


def tiny_classifier() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=3
    )
    return BertForSequenceClassification(config).eval()


def padded_batch():
    ids = torch.tensor([[2, 5, 6, 7, 8, 3], [2, 9, 3, 0, 0, 0]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long()}


@torch.no_grad()
def test_mean_pooling_makes_the_head_read_the_mean_of_the_real_tokens():
    model = tiny_classifier()
    batch = padded_batch()
    hidden = model.bert(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean = (hidden * mask).sum(1) / mask.sum(1)  # padding left out, as sentence-transformers averages

    assert "averaging layer" in pool_as_trained(model, "mean", "test")
    assert model.config.num_hidden_layers == 3
    pooled = model.bert(**batch).pooler_output
    expected = torch.tanh(POOLER_GAIN * torch.nn.functional.layer_norm(mean, (32,)))
    # the residual of the first token is drowned (1/SCALE of the sum), not removed
    assert torch.nn.functional.cosine_similarity(pooled, expected).min() > 0.9999
    assert torch.allclose(pooled, expected, atol=1e-3)
    logits = model(**batch).logits
    assert torch.allclose(logits, model.classifier(pooled), atol=1e-6)


@torch.no_grad()
def test_cls_pooling_reads_the_first_token_without_the_untrained_pooler():
    model = tiny_classifier()
    batch = padded_batch()
    first = model.bert(**batch).last_hidden_state[:, 0]
    pool_as_trained(model, "cls", "test")
    assert model.config.num_hidden_layers == 2
    assert torch.allclose(model.bert(**batch).pooler_output, torch.tanh(POOLER_GAIN * first), atol=1e-5)


@torch.no_grad()
def test_the_pooled_classifier_saves_and_loads_as_a_plain_transformers_model(tmp_path):
    model = tiny_classifier()
    pool_as_trained(model, "mean", "1_Pooling/config.json")
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved[CONFIG_KEY] == {"mode": "mean", "source": "1_Pooling/config.json"}
    assert "auto_map" not in saved and saved["architectures"] == ["BertForSequenceClassification"]
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    batch = padded_batch()
    assert torch.allclose(loaded(**batch).logits, model(**batch).logits, atol=1e-6)


@torch.no_grad()
def test_an_encoder_without_bert_layers_is_left_as_it_was():
    config = DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64, num_labels=3)
    model = DistilBertForSequenceClassification(config).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert pool_as_trained(model, "mean", "test") is None
    assert not hasattr(model.config, CONFIG_KEY)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@torch.no_grad()
def test_the_audit_reads_the_encoders_own_states_below_the_averaging_layer():
    from hftransfer.auditing.features import encoder_states

    model = tiny_classifier()
    batch = padded_batch()
    before = encoder_states(model, batch)
    pool_as_trained(model, "mean", "test")
    assert torch.allclose(encoder_states(model, batch), before, atol=1e-6)


def test_a_distilled_student_keeps_the_averaging_layer_on_top_of_its_layers():
    from hftransfer.distillation.student import cut_teacher

    model = tiny_classifier()
    pool_as_trained(model, "mean", "test")  # 2 layers + the averaging layer
    student, kept = cut_teacher(model, 1)
    assert kept == [0, 2] and student.config.num_hidden_layers == 2
    assert not student.bert.encoder.layer[-1].attention.self.query.weight.any()  # uniform attention: the pooling
