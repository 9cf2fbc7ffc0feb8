"""Image classification wiring on tiny randomly initialised timm and transformers models (seconds each)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import COLOURS, make_class_folder, make_config, make_image
from PIL import Image
from transformers import pipeline

from hftransfer.backbones.checkpoints import ModelSourceError
from hftransfer.data.images import to_mode
from hftransfer.data.tables import DataError
from hftransfer.data.transforms import build_transforms, data_config_for
from hftransfer.tasks.image_classification import load_data
from hftransfer.training.recipe import main


@pytest.fixture
def split_folders(tmp_path) -> Path:
    root = tmp_path / "images"
    make_class_folder(root / "train", 8, modes=("RGB", "L", "P", "RGBA"))
    make_class_folder(root / "val", 3)
    make_class_folder(root / "test", 2)
    # noise every real folder has: hidden files and notebook checkpoints are not data
    (root / "train" / "red" / ".DS_Store").write_bytes(b"\x00\x01")
    make_image(root / "train" / "red" / ".ipynb_checkpoints" / "copy.png", (0, 255, 0))
    make_image(root / "train" / ".hidden_class" / "x.png", (0, 255, 0))
    return root


def flags(out: Path, **options) -> list[str]:
    argv = [
        "--task",
        "image-classification",
        "--output_dir",
        str(out),
        "--num_train_epochs",
        "1",
        "--per_device_train_batch_size",
        "8",
        "--disable_tqdm",
        "true",
        "--logging_steps",
        "1",
        "--dataloader_num_workers",
        "0",
    ]
    for key, value in options.items():
        argv += [f"--{key}", str(value)]
    return argv


# --- data layouts ----------------------------------------------------------------------------------------


def image_config(**options):
    return make_config(task="image-classification", timm_arch="test_efficientnet", **options)


def test_split_folders_hidden_files_ignored(split_folders):
    data = load_data(image_config(data_dir=str(split_folders)))
    assert data.label_names == ["blue", "red"]
    assert {s: len(ds) for s, ds in data.splits.items()} == {"train": 16, "validation": 6, "test": 4}
    assert not any("/." in p for p in data.splits["train"]["image"])


def test_class_folders_without_splits_carve_validation(tmp_path):
    root = make_class_folder(tmp_path / "flat", 10)
    data = load_data(image_config(data_dir=str(root), validation_fraction=0.2))
    assert {s: len(ds) for s, ds in data.splits.items()} == {"train": 16, "validation": 4}


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_listing_files_with_relative_paths(tmp_path, suffix):
    root = make_class_folder(tmp_path / "pics", 5)
    rows = [{"file": str(p.relative_to(tmp_path)), "species": p.parent.name} for p in sorted(root.rglob("*.png"))]
    listing = tmp_path / f"train{suffix}"
    if suffix == ".csv":
        with open(listing, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["file", "species"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        listing.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_data(image_config(train_file=str(listing), label_column="species"))
    assert data.columns["image"] == "file" and data.label_names == ["blue", "red"]
    assert all(Path(p).is_file() for p in data.splits["train"]["file"])


def test_corrupt_image_reported_by_path_or_skipped(split_folders):
    bad = split_folders / "train" / "blue" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    truncated = split_folders / "val" / "red" / "cut.png"
    truncated.write_bytes((split_folders / "val" / "red" / "red_0.png").read_bytes()[:60])
    with pytest.raises(DataError, match=r"1 unreadable image file\(s\) in the train split: .*broken.jpg"):
        load_data(image_config(data_dir=str(split_folders)))
    data = load_data(image_config(data_dir=str(split_folders), skip_corrupt_images="true"))
    assert len(data.splits["train"]) == 16 and len(data.splits["validation"]) == 6
    assert "train: skipped 1 unreadable image file(s)" in data.notes
    assert "validation: skipped 1 unreadable image file(s)" in data.notes


def test_image_check_remembers_verified_files_by_size_and_mtime(split_folders, tmp_path, monkeypatch):
    """A second check of the same files decodes none; a changed file is decoded again; a bad one every time."""
    from hftransfer.data import image_check

    monkeypatch.setenv(image_check.CACHE_ENV, str(tmp_path / "verified"))
    paths = sorted(str(p) for p in (split_folders / "val").rglob("*.png"))
    decode, decoded = image_check._decode_problem, []
    monkeypatch.setattr(image_check, "_decode_problem", lambda path: decoded.append(path) or decode(path))
    assert image_check.find_unreadable(paths) == [] and sorted(decoded) == paths
    decoded.clear()
    assert image_check.find_unreadable(paths) == [] and decoded == []
    Path(paths[0]).write_bytes(b"not an image any more")  # another size and mtime
    for _ in range(2):  # reported on every run: bad files are never remembered
        decoded.clear()
        assert [path for path, _ in image_check.find_unreadable(paths)] == [paths[0]] and decoded == [paths[0]]
    make_image(Path(paths[0]), (200, 0, 0))  # fixed: checked once more, then remembered
    decoded.clear()
    assert image_check.find_unreadable(paths) == [] and decoded == [paths[0]]
    assert len(list((tmp_path / "verified").glob("*.json"))) == 1


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "I;16"])
def test_colour_modes_become_rgb(mode):
    image = Image.new("RGB", (8, 8), (10, 200, 30)).convert(mode)
    assert to_mode(image).mode == "RGB"
    assert to_mode(image, channels=1).mode == "L"


def test_transparent_pixels_become_white():
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert to_mode(image).getpixel((0, 0)) == (255, 255, 255)


def test_missing_data_dir_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match="data_dir not found or not a folder"):
        load_data(image_config(data_dir=str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders in"):
        load_data(image_config(data_dir=str(tmp_path / "empty")))


# --- preprocessing from the checkpoint --------------------------------------------------------------------


def test_transforms_follow_the_checkpoint(tiny_vit):
    from transformers import AutoImageProcessor, ConvNextImageProcessor

    vit = data_config_for(AutoImageProcessor.from_pretrained(tiny_vit))
    assert vit["input_size"] == (3, 32, 32) and vit["crop_mode"] == "squash" and vit["mean"] == (0.5, 0.5, 0.5)
    convnext = data_config_for(ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875))
    assert convnext["input_size"] == (3, 224, 224) and convnext["crop_pct"] == 0.875
    assert convnext["interpolation"] == "bicubic"
    train_tf, eval_tf = build_transforms(vit, "light", 0.5)
    image = Image.new("RGB", (97, 61), (1, 2, 3))
    assert eval_tf(image).shape == train_tf(image).shape == (3, 32, 32)
    for preset in ("none", "strong"):
        assert build_transforms(vit, preset, 0.5)[0](image).shape == (3, 32, 32)


# --- backbones and saved outputs ------------------------------------------------------------------------


def assert_pipeline_labels(out: Path, image_path: Path):
    classifier = pipeline("image-classification", model=str(out), device="cpu")
    predictions = classifier(str(image_path))
    assert {p["label"] for p in predictions} == {"blue", "red"}
    return classifier


@pytest.mark.e2e
def test_timm_arch_with_local_weights_saves_a_pipeline_model(split_folders, timm_weights, tmp_path):
    out = tmp_path / "out"
    main(flags(out, timm_arch="test_efficientnet", weights=timm_weights, data_dir=split_folders))
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "test_efficientnet" and config["label_names"] == ["blue", "red"]
    assert config["pretrained_cfg"]["input_size"] == [3, 160, 160]
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(out)  # preprocessing travels in config.json's pretrained_cfg
    assert processor.data_config["input_size"] == (3, 160, 160) and processor.data_config["crop_pct"] == 0.95
    results = json.loads((out / "all_results.json").read_text())
    assert "eval_accuracy" in results and "test_accuracy" in results
    assert_pipeline_labels(out, split_folders / "val" / "red" / "red_0.png")

    # fine-tune the result again, with other labels (the head is replaced without being asked)
    relabelled = tmp_path / "three"
    make_class_folder(relabelled, 4)
    for i in range(4):
        make_image(relabelled / "green" / f"g{i}.png", (20, 200, 20))
    again = tmp_path / "again"
    main(flags(again, model=out, data_dir=relabelled, validation_fraction=0.25))
    assert json.loads((again / "config.json").read_text())["label_names"] == ["blue", "green", "red"]


def test_timm_weights_are_loaded_and_the_head_is_new(split_folders, timm_weights):
    from hftransfer.tasks.image_classification import TASK

    config = image_config(data_dir=str(split_folders), weights=str(timm_weights))
    data = load_data(config)
    model = TASK.build_model(config, data, TASK.load_model_config(config))
    source = torch.load(timm_weights, weights_only=True)
    state = model.timm_model.state_dict()
    backbone = [k for k in source if not k.startswith("classifier.")]
    assert backbone and all(torch.equal(state[k], source[k]) for k in backbone)
    assert model.timm_model.get_classifier().out_features == 2 and model.config.id2label == {0: "blue", 1: "red"}


@pytest.mark.e2e
def test_weights_key_map_renames_checkpoint_keys(split_folders, timm_weights, tmp_path):
    renamed = tmp_path / "renamed.pth"
    torch.save({f"backbone.{k}": v for k, v in torch.load(timm_weights, weights_only=True).items()}, renamed)
    key_map = tmp_path / "map.yaml"
    key_map.write_text("rules:\n  - ['^backbone\\.', '']\n")
    out = tmp_path / "out"
    main(
        flags(
            out,
            timm_arch="test_efficientnet",
            weights=renamed,
            weights_key_map=key_map,
            data_dir=split_folders,
            max_steps=1,
        )
    )
    assert (out / "model.safetensors").is_file()
    with pytest.raises(ModelSourceError, match="do not match timm 'test_efficientnet'.*needs weights_key_map"):
        main(flags(tmp_path / "o2", timm_arch="test_efficientnet", weights=renamed, data_dir=split_folders))


@pytest.mark.e2e
def test_timm_hub_format_folder(split_folders, timm_weights, tmp_path):
    """A folder laid out like a `timm/...` Hub repo loads through AutoModelForImageClassification."""
    import timm
    from timm.models import save_for_hf

    model = timm.create_model("test_efficientnet")
    model.load_state_dict(torch.load(timm_weights, weights_only=True))
    repo = tmp_path / "timm-repo"
    save_for_hf(model, repo)
    out = tmp_path / "out"
    main(flags(out, model=repo, data_dir=split_folders, max_steps=2))
    assert_pipeline_labels(out, split_folders / "val" / "blue" / "blue_0.png")


@pytest.mark.e2e
def test_transformers_vit_folder(split_folders, tiny_vit, tmp_path):
    out = tmp_path / "out"
    main(flags(out, model=tiny_vit, data_dir=split_folders, augmentation="strong"))
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "blue", "1": "red"}
    assert_pipeline_labels(out, split_folders / "test" / "red" / "red_0.png")


def test_bad_backbone_input(split_folders, timm_weights, tmp_path):
    with pytest.raises(ModelSourceError, match="unknown timm architecture 'efficientnet_lite00'; did you mean: "):
        main(flags(tmp_path / "a", timm_arch="efficientnet_lite00", data_dir=split_folders))
    with pytest.raises(ModelSourceError, match="weights file not found: "):
        main(flags(tmp_path / "b", timm_arch="test_efficientnet", weights=tmp_path / "x.pth", data_dir=split_folders))
    with pytest.raises(ModelSourceError, match="give either model"):
        main(flags(tmp_path / "c", timm_arch="test_efficientnet", model="timm/x", data_dir=split_folders))
    from hftransfer.config.options import ConfigError

    with pytest.raises(ConfigError, match="unknown augmentation 'heavy'; valid: auto, none, light, strong"):
        main(flags(tmp_path / "d", timm_arch="test_efficientnet", data_dir=split_folders, augmentation="heavy"))


def test_images_stored_inside_a_dataset_file(tmp_path):
    """Parquet with an embedded Image feature: the same path a Hub dataset's image column takes."""
    from datasets import Dataset
    from datasets import Image as ImageFeature

    rows = {
        "image": [Image.new("RGB", (20, 20), COLOURS["red" if i % 2 else "blue"]) for i in range(12)],
        "label": ["red" if i % 2 else "blue" for i in range(12)],
    }
    path = tmp_path / "train.parquet"
    Dataset.from_dict(rows).cast_column("image", ImageFeature()).to_parquet(str(path))
    config = image_config(train_file=str(path), validation_fraction=0.25)
    data = load_data(config)
    assert data.label_names == ["blue", "red"] and len(data.splits["validation"]) == 3
    from hftransfer.tasks.image_classification import TASK

    prepared = TASK.prepare_datasets(
        config, TASK.build_preprocessing(config, data, TASK.load_model_config(config)), data
    )
    batch = TASK.build_collator(config, None)([prepared["train"][i] for i in range(4)])
    assert batch["pixel_values"].shape == (4, 3, 160, 160) and batch["labels"].dtype == torch.long


def test_timm_arch_without_weights_offline_says_so(split_folders, tmp_path):
    with pytest.raises(
        ModelSourceError,
        match="could not fetch pretrained weights for timm architecture 'test_efficientnet'.*pass a local weights file",
    ):
        main(flags(tmp_path / "o", timm_arch="test_efficientnet", data_dir=split_folders))


def test_text_task_rejects_an_image_folder(split_folders, tiny_bert, tmp_path):
    with pytest.raises(DataError, match="text-classification reads files .* not data_dir"):
        main(["--model", str(tiny_bert), "--data_dir", str(split_folders), "--output_dir", str(tmp_path / "o")])


# --- memory: CPU image batches as micro-batches ----------------------------------------------------------


def test_cpu_image_batches_split_into_micro_batches_of_8_to_16():
    from hftransfer.engine.runtime import micro_batches

    # 34 = 2 x 17 = 17 x 2 and 17 is prime: no split of 8 to 16 images exists, so the batch stays whole
    assert {b: micro_batches(b) for b in (8, 16, 17, 24, 32, 34, 40, 48, 64)} == {
        8: 1,
        16: 1,
        17: 1,
        24: 2,
        32: 2,
        34: 1,
        40: 4,
        48: 3,
        64: 4,
    }


@pytest.mark.e2e
def test_a_cpu_image_batch_of_32_trains_as_two_micro_batches_with_the_same_step(tmp_path, tiny_vit):
    """Micro-batches change how a step is computed, not the step: the same weights after it as one whole batch
    (a ViT has no batch-norm, so the two are equal up to float summation order); the run says what it did."""
    from safetensors.torch import load_file

    root = tmp_path / "images"
    make_class_folder(root / "train", 16)  # 32 images: one optimiser step
    make_class_folder(root / "val", 2)
    step = dict(
        model=tiny_vit,
        data_dir=root,
        max_steps=1,
        per_device_train_batch_size=32,
        augmentation="none",
        optim="sgd",
        learning_rate=0.5,
        warmup_steps=0,
        lr_scheduler_type="constant",
        calibrate="false",
        strategy="full",
        seed=3,
    )
    main(flags(tmp_path / "split", **step))
    main(flags(tmp_path / "whole", **step, gradient_accumulation_steps=1))

    saved = (tmp_path / "split" / "hftransfer_config.yaml").read_text()
    assert "per_device_train_batch_size: 16" in saved and "gradient_accumulation_steps: 2" in saved
    assert "a batch of 32 images runs as 2 micro-batches" in saved
    assert "gradient_accumulation_steps: 1" in (tmp_path / "whole" / "hftransfer_config.yaml").read_text()
    split, whole = (load_file(tmp_path / run / "model.safetensors") for run in ("split", "whole"))
    initial = load_file(tiny_vit / "model.safetensors")
    moved = [k for k in whole if not k.startswith("classifier") and not torch.equal(whole[k], initial[k])]
    assert len(moved) > 10  # the step changed the encoder, not only the head
    for key in whole:
        torch.testing.assert_close(split[key], whole[key], rtol=1e-4, atol=1e-6)


def test_a_vit_checkpoint_loads_whole_as_the_best_model_and_on_resume(tiny_vit, tmp_path):
    """transformers 5 saves a ViT's weights under other names than the model's own; Trainer's plain
    ``load_state_dict`` then matched only the head (trainer.py). Both loads must restore every weight."""
    from transformers import TrainingArguments, ViTForImageClassification

    from hftransfer.engine.trainer import ClassificationTrainer, renamed_on_save

    model = ViTForImageClassification.from_pretrained(tiny_vit)
    checkpoint = tmp_path / "checkpoint-7"
    model.save_pretrained(checkpoint)
    assert renamed_on_save(model, checkpoint)  # the case at hand: the names on disk differ
    saved = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    trainer = ClassificationTrainer(
        model=model, args=TrainingArguments(output_dir=str(tmp_path / "run"), report_to="none", use_cpu=True)
    )
    trainer.state.best_model_checkpoint = str(checkpoint)
    for load in (trainer._load_best_model, lambda: trainer._load_from_checkpoint(str(checkpoint))):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(1.0)  # what training did after the checkpoint
        load()
        for name, tensor in model.state_dict().items():
            assert torch.equal(tensor, saved[name]), name
