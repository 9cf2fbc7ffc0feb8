"""Transfer strategies on tiny text, timm and transformers vision backbones: what moves, what must not.

Every strategy runs for real (``hftransfer.training.recipe.main``); the saved model is compared tensor by tensor
(weights and BatchNorm statistics) with the checkpoint it started from.
"""

from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path

import pytest
import torch
from conftest import make_class_folder, make_config, sentiment_rows, tiny_run_flags, write_rows
from transformers import (
    AutoConfig,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    BertConfig,
    BertModel,
    TimmWrapperForImageClassification,
    TrainingArguments,
    ViTForImageClassification,
    pipeline,
)

from hftransfer.backbones.blocks import layout_of
from hftransfer.backbones.heads import MODELING_FILE
from hftransfer.config.options import ConfigError
from hftransfer.engine.trainer import TransferTrainer
from hftransfer.strategies import get_strategy
from hftransfer.strategies.base import StrategyError, apply_strategy
from hftransfer.strategies.features import cache_key
from hftransfer.strategies.lora import LoraTargetError
from hftransfer.strategies.rates import _depth_of, _module_depths, parameter_groups
from hftransfer.tasks import get_task
from hftransfer.training.recipe import main

STRATEGY_FLAGS = {
    "full": [],
    "linear_probe": [],
    "partial": ["--unfreeze_blocks", "1"],
    "gradual": ["--unfreeze_milestones", "1"],
    "lp_ft": ["--probe_epochs", "2"],
}


# --- fixtures: three kinds of backbone, their data and how to read back what they started from ------------------------


@pytest.fixture(scope="module")
def text_data(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("text-data")
    return {
        "train": write_rows(folder / "train.csv", sentiment_rows(48, seed=1)),
        "validation": write_rows(folder / "dev.csv", sentiment_rows(21, seed=2)),
    }


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("image-data")
    make_class_folder(root / "train", 8)
    make_class_folder(root / "val", 3)
    return root


def backbone_cases(tiny_bert, timm_weights, tiny_vit, text_data, image_folder):
    """name -> (flags, original state with the saved model's key names, loader of the saved model)."""
    bert = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2).state_dict()
    timm_state = {f"timm_model.{k}": v for k, v in torch.load(timm_weights, weights_only=True).items()}
    vit = ViTForImageClassification.from_pretrained(tiny_vit).state_dict()
    image = [
        "--task",
        "image-classification",
        "--data_dir",
        str(image_folder),
        "--per_device_train_batch_size",
        "8",
        "--augmentation",
        "none",
        "--dataloader_num_workers",
        "0",
    ]
    return {
        "bert": (
            [
                "--model",
                str(tiny_bert),
                "--train_file",
                str(text_data["train"]),
                "--validation_file",
                str(text_data["validation"]),
            ],
            bert,
            AutoModelForSequenceClassification,
        ),
        "timm": (
            image + ["--timm_arch", "test_efficientnet", "--weights", str(timm_weights)],
            timm_state,
            TimmWrapperForImageClassification,
        ),
        "vit": (image + ["--model", str(tiny_vit)], vit, ViTForImageClassification),
    }


@pytest.fixture(scope="module")
def cases(tiny_bert, timm_weights, tiny_vit, text_data, image_folder):
    return backbone_cases(tiny_bert, timm_weights, tiny_vit, text_data, image_folder)


def run(out: Path, flags: list[str], *extra: str, epochs: int = 2) -> Path:
    main(
        [
            *flags,
            "--output_dir",
            str(out),
            "--strategy",
            "full",
            "--num_train_epochs",
            str(epochs),
            "--disable_tqdm",
            "true",
            "--logging_steps",
            "1",
            "--feature_cache_dir",
            str(out.parent / "feature-cache"),
            *extra,
        ]
    )
    return out


def moved_by_depth(trained: torch.nn.Module, original: dict) -> dict[int, list[bool]]:
    """For each depth (0 stem … n blocks, n+1 head): whether each tensor (weights and buffers) changed."""
    layout = layout_of(trained)
    depths = _module_depths(layout)
    head_depth = len(layout.blocks) + 1
    result: dict[int, list[bool]] = {}
    for name, tensor in trained.state_dict().items():
        if name not in original or original[name].shape != tensor.shape:
            assert name.split(".")[-2:][0] in {"classifier", "fc", "head"} or depths, name
            result.setdefault(head_depth, []).append(True)  # a new head (resized): trained from scratch
            continue
        if name.endswith("num_batches_tracked"):
            continue
        depth = _depth_of(name, depths, head_depth)
        result.setdefault(depth, []).append(not torch.equal(tensor.float(), original[name].float()))
    return result


# --- every strategy, every kind of backbone ---------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("backbone", ["bert", "timm", "vit"])
@pytest.mark.parametrize("strategy", list(STRATEGY_FLAGS))
def test_strategy_moves_exactly_what_it_should(tmp_path, cases, backbone, strategy):
    flags, original, model_class = cases[backbone]
    # the last epoch's weights (the best checkpoint could be one from before gradual unfroze anything)
    out = run(
        tmp_path / "out", flags, "--strategy", strategy, *STRATEGY_FLAGS[strategy], "--load_best_model_at_end", "false"
    )
    trained = model_class.from_pretrained(out)
    moved = moved_by_depth(trained, original)
    head, blocks = max(moved), sorted(d for d in moved if d not in {0, max(moved)})
    assert any(moved[head]), f"{strategy}: the head did not train"
    if strategy == "linear_probe":
        frozen = [d for d in moved if d != head]
    elif strategy == "partial":  # the last block (and the head) only
        frozen = [d for d in moved if d not in {head, blocks[-1]}]
        assert any(moved[blocks[-1]])
    else:  # full, lp_ft, gradual (all blocks unfrozen at epoch 1 of 2)
        frozen = []
    for depth in frozen:
        assert not any(moved[depth]), f"{strategy}: depth {depth} of {backbone} changed but is frozen"
    for depth in set(moved) - set(frozen):
        assert sum(moved[depth]) >= len(moved[depth]) / 2, f"{strategy}: depth {depth} of {backbone} barely trained"

    saved = (out / "hftransfer_config.yaml").read_text()
    assert f"strategy: {strategy}" in saved


# A fine-tuning phase that diverges (absurd learning rate, no clipping), ranked by validation loss
DIVERGING_FINE_TUNING = (
    "--learning_rate",
    "50",
    "--max_grad_norm",
    "0",
    "--metric_for_best_model",
    "loss",
    "--greater_is_better",
    "false",
)


@pytest.mark.e2e
def test_lp_ft_keeps_the_probe_when_fine_tuning_is_worse(tmp_path, cases, caplog):
    """A fine-tuning phase that diverges (absurd learning rate) must not replace a better probed model."""
    flags, original, model_class = cases["bert"]
    with caplog.at_level(logging.INFO, logger="hftransfer"):
        out = run(
            tmp_path / "out",
            flags,
            "--strategy",
            "lp_ft",
            "--probe_epochs",
            "3",
            "--probe_learning_rate",
            "0.05",
            *DIVERGING_FINE_TUNING,
        )
    assert "fine-tuning did not beat the linear probe (loss" in caplog.text
    trained = model_class.from_pretrained(out).state_dict()
    backbone = [k for k in trained if k.startswith("bert.")]
    assert backbone and all(torch.equal(trained[k], original[k]) for k in backbone)


@pytest.mark.e2e
def test_lp_ft_from_a_fresh_head_keeps_the_probe_only_as_fallback(tmp_path, cases, caplog):
    """fine_tune_from_probe false: fine-tuning restarts from the head the run began with, for full's epochs, and a
    diverging fine-tuning still leaves the probed model."""
    flags, original, model_class = cases["timm"]
    common = ["--strategy", "lp_ft", "--fine_tune_from_probe", "false", "--probe_epochs", "3"]
    with caplog.at_level(logging.INFO, logger="hftransfer"):
        out = run(tmp_path / "out", flags, *common, "--num_train_epochs", "2")
    assert "fine-tuning starts from the fresh head" in caplog.text
    saved = (out / "hftransfer_config.yaml").read_text()
    assert "num_train_epochs: 2" in saved and "fine_tune_from_probe: false" in saved  # not one epoch fewer
    assert "fine-tuning starts from" in (out / "README.md").read_text()

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hftransfer"):
        out = run(
            tmp_path / "diverged",
            flags,
            *common,
            *DIVERGING_FINE_TUNING,
        )
    assert "fine-tuning did not beat the linear probe (loss" in caplog.text
    trained = model_class.from_pretrained(out).state_dict()
    backbone = [k for k in trained if k.startswith("timm_model.") and "classifier" not in k]
    assert backbone and all(torch.equal(trained[k], original[k]) for k in backbone)


@pytest.mark.e2e
def test_linear_probe_fits_a_logistic_regression_unless_told_its_steps(tmp_path, cases, caplog):
    flags, _, _ = cases["timm"]
    out = tmp_path / "out"
    common = ["--strategy", "linear_probe", "--disable_tqdm", "true", "--feature_cache_dir", str(tmp_path / "cache")]
    with caplog.at_level(logging.INFO, logger="hftransfer"):
        main([*flags, "--output_dir", str(out), *common])
    assert "the head on cached features: a logistic regression, C " in caplog.text
    assert "training the head on cached features" not in caplog.text
    results = json.loads((out / "all_results.json").read_text())
    assert 0 <= results["eval_accuracy"] <= 1 and results["train_loss"] > 0
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hftransfer"):
        main([*flags, "--output_dir", str(tmp_path / "steps"), *common, "--num_train_epochs", "2"])
    assert "training the head on cached features for 2" in caplog.text and "logistic regression" not in caplog.text


@pytest.mark.e2e
def test_linear_probe_trains_on_cached_features_and_logs_what_trains(tmp_path, cases, caplog):
    flags, _, _ = cases["timm"]
    with caplog.at_level(logging.INFO, logger="hftransfer"):
        run(tmp_path / "out", flags, "--strategy", "linear_probe")
    text = caplog.text
    assert "training the head on cached features" in text
    assert "linear_probe: head only (of 5 blocks)" in text and "trainable parameters: 514 of 99,710 (0.5%)" in text
    assert len(list((tmp_path / "feature-cache").glob("*.safetensors"))) == 2  # train and validation

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hftransfer"):
        run(tmp_path / "again", flags, "--strategy", "linear_probe")
    assert "train: 16 cached features" in caplog.text  # the second run reads the cache


@pytest.mark.e2e
def test_frozen_batchnorm_statistics_can_be_updated(tmp_path, cases):
    flags, original, model_class = cases["timm"]
    out = run(
        tmp_path / "out", flags, "--strategy", "partial", "--unfreeze_blocks", "1", "--frozen_norm_stats", "update"
    )
    trained = model_class.from_pretrained(out).state_dict()
    stem_stats = [k for k in trained if k.startswith("timm_model.bn1.running_")]
    stem_weights = ["timm_model.bn1.weight", "timm_model.conv_stem.weight"]
    assert all(not torch.equal(trained[k], original[k]) for k in stem_stats)  # statistics re-estimated
    assert all(torch.equal(trained[k], original[k]) for k in stem_weights)  # weights still frozen


# --- gradual unfreezing -----------------------------------------------------------------------------------------------


def test_gradual_unfreezes_at_milestones(tiny_bert, text_files):
    config = make_config(
        model=str(tiny_bert),
        train_file=str(text_files["train"]),
        strategy="gradual",
        unfreeze_milestones=[1, 2],
        output_dir="unused",
    )
    data = get_task("text-classification").load_data(config)
    model = get_task("text-classification").build_model(config, data)
    gradual = get_strategy("gradual")
    model, plan = apply_strategy(gradual, model, config.transfer, config.options_for(gradual), num_train_epochs=3)
    schedule = plan.callbacks[0]

    def trainable_blocks():
        names = {n for n, p in model.named_parameters() if p.requires_grad}
        return [i for i, block in enumerate(plan.layout.blocks) if names.issuperset(block)], names.issuperset(
            plan.layout.stem
        )

    class State:
        epoch = 0.0

    state = State()
    seen = []
    for epoch in (0.0, 1.0, 2.0):
        state.epoch = epoch
        schedule.on_epoch_begin(None, state, None)
        seen.append(trainable_blocks())
    assert seen == [([], False), ([1], False), ([0, 1], True)]
    # every parameter is in the optimizer from the start, at the same rate
    groups = parameter_groups(model, plan, config.transfer, 1e-3, 0.01)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert {g["lr"] for g in groups} == {1e-3}


@pytest.mark.e2e
def test_gradual_keeps_the_learning_rate_schedule(tmp_path, cases):
    flags, _, _ = cases["bert"]
    schedules = {}
    for strategy in ("full", "gradual"):
        out = run(tmp_path / strategy, flags, "--strategy", strategy, "--learning_rate", "1e-3", epochs=3)
        history = json.loads((out / "trainer_state.json").read_text())["log_history"]
        schedules[strategy] = [entry["learning_rate"] for entry in history if "learning_rate" in entry]
    assert len(schedules["full"]) == 6 and schedules["gradual"] == schedules["full"]  # 3 epochs of 2 steps


# --- learning rates per depth -----------------------------------------------------------------------------------------


def test_layer_decay_and_head_rate_in_the_optimizer(tiny_bert, text_files, tmp_path):
    config = make_config(
        model=str(tiny_bert),
        train_file=str(text_files["train"]),
        layer_decay=0.5,
        head_learning_rate=0.01,
        output_dir=str(tmp_path),
    )
    task = get_task("text-classification")
    model = task.build_model(config, task.load_data(config))
    model, plan = apply_strategy(get_strategy("full"), model, config.transfer)
    assert plan.head_names == {"classifier.weight", "classifier.bias"}
    trainer = TransferTrainer(
        model=model,
        args=TrainingArguments(str(tmp_path), learning_rate=1e-3, weight_decay=0.1, report_to="none", use_cpu=True),
        param_groups=partial(parameter_groups, plan=plan, transfer=config.transfer),
    )
    optimizer = trainer.create_optimizer()
    rate = {id(p): (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    expected = {
        "classifier.weight": (0.01, 0.1),
        "classifier.bias": (0.01, 0.0),
        "bert.pooler.dense.weight": (5e-4, 0.1),  # joins the last block
        "bert.encoder.layer.1.attention.self.query.weight": (5e-4, 0.1),
        "bert.encoder.layer.1.output.LayerNorm.weight": (5e-4, 0.0),
        "bert.encoder.layer.0.attention.self.query.weight": (2.5e-4, 0.1),
        "bert.encoder.layer.0.attention.self.query.bias": (2.5e-4, 0.0),
        "bert.embeddings.word_embeddings.weight": (1.25e-4, 0.1),
    }
    for name, (lr, decay) in expected.items():
        assert rate[id(params[name])] == pytest.approx((lr, decay)), name
    assert len(rate) == len(params)


# --- feature cache ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_bert_without_dropout(tmp_path_factory, tiny_bert) -> Path:
    """Dropout off, so a head trained on cached features and one trained through the backbone see the same."""
    folder = tmp_path_factory.mktemp("tiny-bert-no-dropout")
    config = BertConfig.from_pretrained(tiny_bert, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertModel.from_pretrained(tiny_bert, config=config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((tiny_bert / name).read_bytes())
    return folder


@pytest.mark.e2e
@pytest.mark.parametrize("backbone", ["bert", "timm"])
def test_head_on_cache_matches_head_through_backbone(tmp_path, cases, tiny_bert_without_dropout, text_data, backbone):
    flags, _, model_class = cases[backbone]
    if backbone == "bert":
        flags = [
            "--model",
            str(tiny_bert_without_dropout),
            "--train_file",
            str(text_data["train"]),
            "--validation_file",
            str(text_data["validation"]),
        ]
    heads, accuracy = {}, {}
    for cache in ("true", "false"):
        out = run(tmp_path / cache, flags, "--strategy", "linear_probe", "--cache_features", cache, epochs=3)
        state = model_class.from_pretrained(out).state_dict()
        heads[cache] = {k: v for k, v in state.items() if "classifier" in k}
        accuracy[cache] = json.loads((out / "eval_results.json").read_text())["eval_accuracy"]
    assert heads["true"].keys() == heads["false"].keys() and heads["true"]
    for name in heads["true"]:
        torch.testing.assert_close(heads["true"][name], heads["false"][name], atol=2e-4, rtol=1e-3)
    assert accuracy["true"] == accuracy["false"]


def test_feature_pass_puts_each_text_in_its_own_row(tiny_bert_without_dropout):
    """The pass reads texts longest first (less padding); each row still holds its own example's features."""
    from datasets import Dataset
    from transformers import AutoTokenizer, DataCollatorWithPadding

    from hftransfer.strategies.features import extract_features, longest_first

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_without_dropout)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_without_dropout, num_labels=2)
    texts = [
        "short",
        "a much longer text than any of the others in this list",
        "a middling text",
        "x y",
        "another fairly long one, for the pass to sort",
    ]
    dataset = Dataset.from_dict({**tokenizer(texts), "labels": [0, 1, 0, 1, 1]})
    collator, cpu = DataCollatorWithPadding(tokenizer), torch.device("cpu")
    assert longest_first(dataset).tolist()[:2] == [1, 4]
    features, labels = extract_features(model, dataset, collator, batch_size=2, device=cpu)
    assert labels.tolist() == [0, 1, 0, 1, 1]
    for row in range(len(texts)):  # one example alone: no padding at all
        alone, _ = extract_features(model, dataset.select([row]), collator, batch_size=1, device=cpu)
        torch.testing.assert_close(features[row], alone[0], atol=1e-5, rtol=1e-4)


def test_a_sample_s_features_are_cached_by_row_and_the_rest_computed_later(
    tiny_bert_without_dropout, tmp_path, monkeypatch
):
    """auto measures a sample; a probe that follows computes only the rows the sample left out, and gets the
    features a whole pass gives."""
    from datasets import Dataset
    from transformers import AutoTokenizer, DataCollatorWithPadding

    from hftransfer.strategies import features as cache

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_without_dropout)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_without_dropout, num_labels=2)
    texts = [f"text number {i} " + "word " * (i % 5) for i in range(12)]
    dataset = Dataset.from_dict({**tokenizer(texts), "labels": [i % 2 for i in range(12)]})
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_eval_batch_size=4, use_cpu=True, disable_tqdm=True, report_to=[]
    )
    collator = DataCollatorWithPadding(tokenizer)
    whole, _ = cache.extract_features(model, dataset, collator, 4, torch.device("cpu"))
    computed = []
    real_extract = cache.extract_features
    monkeypatch.setattr(
        cache,
        "extract_features",
        lambda model, subset, *a, **k: (computed.append(len(subset)), real_extract(model, subset, *a, **k))[1],
    )

    sample = [9, 2, 5]
    features, labels = cache.cached_features(model, dataset, "train", collator, args, str(tmp_path / "c"), rows=sample)
    torch.testing.assert_close(features, whole[sample], atol=1e-5, rtol=1e-4)
    assert labels.tolist() == [1, 0, 1] and computed == [3]
    features, labels = cache.cached_features(model, dataset, "train", collator, args, str(tmp_path / "c"))
    torch.testing.assert_close(features, whole, atol=1e-5, rtol=1e-4)
    assert labels.tolist() == [i % 2 for i in range(12)] and computed == [3, 9]  # only the 9 rows not yet read
    cache.cached_features(model, dataset, "train", collator, args, str(tmp_path / "c"), rows=[1, 9])
    assert computed == [3, 9]  # all from the cache
    assert len(list((tmp_path / "c").glob("*.safetensors"))) == 1  # one file per split


@pytest.mark.e2e
def test_changed_preprocessing_invalidates_cached_features(tmp_path, cases):
    flags, _, _ = cases["bert"]
    cache = tmp_path / "feature-cache"
    run(tmp_path / "a", flags, "--strategy", "linear_probe", "--max_length", "16")
    run(tmp_path / "b", flags, "--strategy", "linear_probe", "--max_length", "16", "--learning_rate", "0.01")
    assert len(list(cache.glob("*.safetensors"))) == 2  # a different head learning rate reuses the features
    run(tmp_path / "c", flags, "--strategy", "linear_probe", "--max_length", "8")
    assert len(list(cache.glob("*.safetensors"))) == 4  # different token ids: new features


def test_image_transform_is_part_of_the_cache_key(image_folder, timm_weights):
    config = make_config(
        task="image-classification",
        timm_arch="test_efficientnet",
        weights=str(timm_weights),
        data_dir=str(image_folder),
        strategy="linear_probe",
    )
    task = get_task("image-classification")
    model_config = task.load_model_config(config)
    data = task.load_data(config)
    processor = task.build_preprocessing(config, data, model_config)
    before = task.prepare_datasets(config, processor, data, model_config)["train"]
    processor.data_config["interpolation"] = (
        "bilinear" if processor.data_config["interpolation"] != "bilinear" else "bicubic"
    )
    after = task.prepare_datasets(config, processor, data, model_config)["train"]
    assert cache_key("w", "head", before, "train") != cache_key("w", "head", after, "train")
    assert cache_key("w", "head", before, "train") == cache_key("w", "head", before, "train")
    assert cache_key("w", "head", before, "train") != cache_key("other-weights", "head", before, "train")


# --- heads ------------------------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_mlp_head_trains_saves_and_loads_with_pipeline(tmp_path, tiny_bert, text_files):
    out = tmp_path / "mlp"
    main(
        tiny_run_flags(tiny_bert, out, train=text_files["train"], validation=text_files["validation"])
        + ["--head", "mlp", "--head_hidden_sizes", "24", "16", "--head_dropout", "0.1", "--head_activation", "relu"]
    )
    assert (out / MODELING_FILE).is_file()
    model = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True)
    shapes = [tuple(m.weight.shape) for m in model.classifier if isinstance(m, torch.nn.Linear)]
    assert shapes == [(24, 32), (16, 24), (2, 16)]
    saved = json.loads((out / "eval_results.json").read_text())["eval_accuracy"]
    classifier = pipeline("text-classification", model=str(out), trust_remote_code=True, device="cpu")
    rows = sentiment_rows(21, seed=2)
    predicted = classifier([r["text"] for r in rows])
    assert sum(p["label"] == r["label"] for p, r in zip(predicted, rows)) / len(rows) == pytest.approx(saved)


@pytest.mark.e2e
def test_mlp_head_on_a_timm_backbone_loads_with_pipeline(tmp_path, cases, image_folder):
    flags, _, _ = cases["timm"]
    out = run(tmp_path / "out", flags, "--head", "mlp", "--head_hidden_sizes", "32", epochs=1)
    model = AutoModelForImageClassification.from_pretrained(out, trust_remote_code=True)
    assert isinstance(model.timm_model.classifier, torch.nn.Sequential)
    saved = json.loads((out / "eval_results.json").read_text())["eval_accuracy"]
    classifier = pipeline("image-classification", model=str(out), trust_remote_code=True, device="cpu")
    paths = sorted((image_folder / "val").glob("*/*.png"))
    predicted = classifier([str(p) for p in paths])
    assert sum(p[0]["label"] == path.parent.name for p, path in zip(predicted, paths)) / len(paths) == pytest.approx(
        saved
    )


@pytest.mark.e2e
def test_timm_pooling_is_saved_and_used_on_reload(tmp_path, cases):
    flags, _, _ = cases["timm"]
    out = run(tmp_path / "out", flags, "--pooling", "max", epochs=1)
    model = TimmWrapperForImageClassification.from_pretrained(out)
    assert model.timm_model.global_pool.pool_type == "max"


# --- LoRA -------------------------------------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("backbone", ["bert", "timm", "vit"])
def test_lora_merged_changes_only_targets_and_head(tmp_path, cases, backbone):
    flags, original, model_class = cases[backbone]
    out = run(tmp_path / "out", flags, "--strategy", "lora", "--learning_rate", "1e-2")
    assert not (out / "adapter_config.json").exists()
    model = model_class.from_pretrained(out)  # a plain model: adapters merged
    head = {n for n in layout_of(model).head}
    trained = model.state_dict()
    changed = [k for k, v in trained.items() if k not in head and k in original and not torch.equal(v, original[k])]
    # merged adapters change the weight matrices of attention projections (text, ViT) or 1x1 convolutions (CNN);
    # embeddings, norms, BatchNorm statistics and biases stay as they were
    assert changed, backbone
    for name in changed:
        assert name.endswith(".weight") and not any(part in name for part in ("norm", "embed", "bn", "bias")), name
        assert trained[name].dim() == 2 or trained[name].shape[-2:] == (1, 1), name
    comparable = [k for k in head if k in original and trained[k].shape == original[k].shape]
    assert not comparable or any(not torch.equal(trained[k], original[k]) for k in comparable)  # the head trained


@pytest.mark.e2e
def test_lora_adapter_mode_saves_the_adapter(tmp_path, cases, tiny_bert):
    from peft import PeftModel

    flags, _, _ = cases["bert"]
    out = run(tmp_path / "out", flags, "--strategy", "lora", "--lora_save", "adapter", "--lora_r", "4")
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert, config=AutoConfig.from_pretrained(out))
    model = PeftModel.from_pretrained(base, out)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4
    assert model.base_model.model.classifier.modules_to_save["default"].weight.shape == (2, 32)


# --- bad input --------------------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_bad_strategy_inputs_are_named(tmp_path, cases):
    flags, _, _ = cases["bert"]
    with pytest.raises(
        StrategyError, match="unknown strategy 'freeze'; valid strategies: auto, full, linear_probe, partial"
    ):
        run(tmp_path / "a", flags, "--strategy", "freeze")
    with pytest.raises(
        StrategyError,
        match=r"unfreeze_blocks=7 but the backbone has 2 blocks; choose 1 to 2 "
        r"\(blocks: bert.encoder.layer.0, bert.encoder.layer.1 \+ pooler\)",
    ):
        run(tmp_path / "b", flags, "--strategy", "partial", "--unfreeze_blocks", "7")
    with pytest.raises(LoraTargetError, match="entry 'qkv' matches no adaptable module.*query"):
        run(tmp_path / "c", flags, "--strategy", "lora", "--lora_target_modules", "qkv")
    with pytest.raises(ConfigError, match="unknown head 'deep'; valid: linear, mlp"):
        run(tmp_path / "d", flags, "--head", "deep")
