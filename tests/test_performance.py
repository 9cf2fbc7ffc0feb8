"""Mixed precision, activation checkpointing, channels_last and batch-size finding, on CPU with tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import make_class_folder, make_config, sentiment_rows, write_rows
from safetensors.torch import load_file
from transformers import pipeline

import hftransfer.config.device as precision
from hftransfer.config.device import PrecisionError, placement_defaults
from hftransfer.config.options import ConfigError
from hftransfer.engine.trainer import TransferTrainer
from hftransfer.training.recipe import run


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    return {
        "train": write_rows(tmp_path / "train.csv", sentiment_rows(48, seed=1)),
        "validation": write_rows(tmp_path / "dev.csv", sentiment_rows(9, seed=2)),
    }


def text_config(tiny_bert, files, out, **options):
    options = {"num_train_epochs": 1, "per_device_train_batch_size": 16, "disable_tqdm": "true", **options}
    return make_config(
        model=tiny_bert, train_file=files["train"], validation_file=files["validation"], output_dir=out, **options
    )


@pytest.mark.e2e
def test_bf16_on_cpu_trains_in_bfloat16(tiny_bert, files, tmp_path, monkeypatch):
    seen = []
    training_step = TransferTrainer.training_step

    def recording(self, model, inputs, *args, **kwargs):
        # the dtype a linear layer inside the model computes in (accelerate casts the model's outputs back to
        # float32, so the logits would not tell)
        layer = next(m for m in self.accelerator.unwrap_model(model).modules() if isinstance(m, torch.nn.Linear))
        hook = layer.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
        try:
            return training_step(self, model, inputs, *args, **kwargs)
        finally:
            hook.remove()

    monkeypatch.setattr(TransferTrainer, "training_step", recording)
    config = text_config(tiny_bert, files, tmp_path / "out", bf16="true", max_steps=3)
    if not torch.accelerator.is_available():  # one flag: no --use_cpu needed on a machine without a GPU
        assert config.training.use_cpu and "use_cpu" not in config.explicit
        assert "use_cpu" not in config.to_dict()["training"]  # the saved config still uses a GPU where one is
    results = run(config).metrics
    assert seen == [torch.bfloat16] * 3
    assert torch.isfinite(torch.tensor(results["eval_loss"]))
    assert pipeline("text-classification", model=str(tmp_path / "out"))("a good film")[0]["label"]


def test_precision_the_hardware_cannot_do_is_refused_with_the_alternative(monkeypatch):
    monkeypatch.setattr(precision, "accelerator_available", lambda: False)
    with pytest.raises(PrecisionError, match="fp16 mixed precision needs a GPU .* use --bf16"):
        placement_defaults(fp16=True, bf16=False, use_cpu=None)
    with pytest.raises(PrecisionError, match="choose one"):
        placement_defaults(fp16=True, bf16=True, use_cpu=None)
    assert placement_defaults(fp16=False, bf16=True, use_cpu=None) == {"use_cpu": True}
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")  # from `accelerate launch --mixed_precision fp16`
    with pytest.raises(PrecisionError, match="fp16"):
        placement_defaults(fp16=False, bf16=False, use_cpu=None)

    # a GPU without bf16 (a V100 or T4)
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
    monkeypatch.setattr(precision, "accelerator_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100-SXM2-16GB")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 0))
    with pytest.raises(PrecisionError, match=r"Tesla V100-SXM2-16GB is 7\.0\. Use --fp16"):
        placement_defaults(fp16=False, bf16=True, use_cpu=None)
    assert placement_defaults(fp16=True, bf16=False, use_cpu=None) == {}


def test_fp16_on_a_cpu_run_fails_before_any_work(tiny_bert, files, tmp_path):
    with pytest.raises(PrecisionError, match="fp16 mixed precision needs a GPU"):
        text_config(tiny_bert, files, tmp_path / "out", fp16="true", use_cpu="true")
    assert not (tmp_path / "out").exists()


@pytest.mark.e2e
def test_activation_checkpointing_gives_the_same_model(tiny_bert, files, tmp_path):
    # partial: the embeddings and block 0 are frozen, so the checkpointed block's input needs no grad; the
    # unfrozen block must still get its gradients (the classic silent failure of reentrant checkpointing)
    common = {"strategy": "partial", "unfreeze_blocks": 1, "max_steps": 3, "learning_rate": 1e-2}
    run(text_config(tiny_bert, files, tmp_path / "plain", **common))
    active = []
    training_step = TransferTrainer.training_step

    def recording(self, model, inputs, *args, **kwargs):
        active.append(self.accelerator.unwrap_model(model).is_activation_checkpointing)
        return training_step(self, model, inputs, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TransferTrainer, "training_step", recording)
        run(text_config(tiny_bert, files, tmp_path / "checkpointed", activation_checkpointing="true", **common))
    assert active == [True] * 3
    plain, checkpointed = (load_file(tmp_path / d / "model.safetensors") for d in ("plain", "checkpointed"))
    pretrained = load_file(Path(tiny_bert) / "model.safetensors")
    top = [n for n in plain if ".layer.1." in n and n.endswith("weight")]
    assert top and all(not torch.equal(plain[n], pretrained[n.removeprefix("bert.")]) for n in top)
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-4, atol=1e-5)


@pytest.mark.e2e
def test_channels_last_vision_run_and_refused_for_text(timm_weights, tiny_bert, files, tmp_path):
    root = make_class_folder(tmp_path / "images", 8)
    out = tmp_path / "out"
    config = make_config(
        task="image-classification",
        timm_arch="test_efficientnet",
        weights=timm_weights,
        data_dir=root,
        output_dir=out,
        num_train_epochs=1,
        per_device_train_batch_size=8,
        disable_tqdm="true",
        channels_last="true",
        dataloader_num_workers=0,
    )
    seen = []
    training_step = TransferTrainer.training_step

    def recording(self, model, inputs, *args, **kwargs):
        seen.append(inputs["pixel_values"].is_contiguous(memory_format=torch.channels_last))
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))
        seen.append(conv.weight.is_contiguous(memory_format=torch.channels_last))
        return training_step(self, model, inputs, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TransferTrainer, "training_step", recording)
        run(config)
    assert seen and all(seen)
    assert pipeline("image-classification", model=str(out))(str(next(root.rglob("*.png"))))[0]["label"]
    with pytest.raises(ConfigError, match="channels_last is a memory format for image inputs"):
        run(text_config(tiny_bert, files, tmp_path / "text", channels_last="true"))


@pytest.mark.e2e
def test_auto_find_batch_size_recovers_from_out_of_memory(tiny_bert, files, tmp_path, monkeypatch):
    training_step = TransferTrainer.training_step
    sizes = []

    def runs_out_of_memory_above_10(self, model, inputs, *args, **kwargs):
        sizes.append(len(inputs["labels"]))
        if len(inputs["labels"]) > 10:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return training_step(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(TransferTrainer, "training_step", runs_out_of_memory_above_10)
    out = tmp_path / "out"
    run(text_config(tiny_bert, files, out, auto_find_batch_size="true"))
    assert sizes[0] == 16 and max(sizes[-3:]) <= 10  # 16 → 14 → 12 → 10, then training goes on
    assert json.loads((out / "trainer_state.json").read_text())["train_batch_size"] <= 10
    assert (out / "model.safetensors").is_file()


def test_cpu_defaults_evaluate_in_training_sized_batches_and_run_images_channels_last(monkeypatch, tmp_path):
    import sys

    from transformers import TrainingArguments

    from hftransfer.config.options import TransferArguments
    from hftransfer.engine.performance import ChannelsLastCollator, apply_performance_options, default_channels_last
    from hftransfer.engine.runtime import OPT_OUT, configure_cpu_run
    from hftransfer.tasks import get_task

    if not sys.platform.startswith("linux"):
        pytest.skip("the allocator settings are glibc's")
    monkeypatch.delenv(OPT_OUT, raising=False)

    def args(**kw):
        return TrainingArguments(
            output_dir=str(tmp_path),
            use_cpu=True,
            report_to="none",
            per_device_train_batch_size=32,
            per_device_eval_batch_size=64,
            **kw,
        )

    chosen_by_default, chosen_by_user = args(), args()
    configure_cpu_run(chosen_by_default)
    configure_cpu_run(chosen_by_user, eval_batch_chosen=True)
    # a larger evaluation batch needs blocks the training steps' freed memory cannot hold (runtime.py)
    assert chosen_by_default.per_device_eval_batch_size == 32 and chosen_by_user.per_device_eval_batch_size == 64

    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    image, text = TransferArguments(), TransferArguments()
    collator = apply_performance_options(conv, lambda rows: rows, get_task("image-classification"), image, args())
    assert isinstance(collator, ChannelsLastCollator) and image.channels_last is None  # applied, config untouched
    assert conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert default_channels_last(get_task("image-classification"), args())
    plain = apply_performance_options(torch.nn.Linear(2, 2), None, get_task("text-classification"), text, args())
    assert plain is None and not default_channels_last(get_task("text-classification"), args())
