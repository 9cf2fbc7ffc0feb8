"""``streaming: true``: training rows read from a stream, labels and validation from its head, steps not epochs."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
import torch
from conftest import make_image, sentiment_rows, tiny_run_flags, write_rows
from transformers import pipeline

from hftransfer.config.options import ConfigError
from hftransfer.data.tables import DataError
from hftransfer.strategies import auto
from hftransfer.tasks import get_task
from hftransfer.training.parse import parse_config
from hftransfer.training.recipe import main


def numbered_rows(n: int, seed: int = 0, labels=("negative", "positive")) -> list[dict]:
    """Synthetic reviews, each text unique (numbered), so rows can be followed through the stream."""
    return [
        {"text": f"{i} {row['text']}", "label": row["label"]} for i, row in enumerate(sentiment_rows(n, seed, labels))
    ]


def stream_flags(model, out, train, *extra: str) -> list[str]:
    return [*tiny_run_flags(model, out, train=train), "--streaming", "true", *extra]


def load(flags: list[str]):
    config = parse_config(flags)
    return config, get_task(config.model.task).load_data(config)


def test_stream_trains_on_every_row_but_the_carved_validation(tiny_bert, tmp_path):
    rows = numbered_rows(300)
    train = write_rows(tmp_path / "train.csv", rows)
    config, data = load(
        stream_flags(
            tiny_bert, tmp_path / "o", train, "--max_steps", "5", "--stream_head_rows", "100", "--shuffle_buffer", "50"
        )
    )
    validation = data.splits["validation"]
    assert len(validation) == 20  # the carve rule on the 100-row head: a fifth of it at most
    carved = set(validation["text"])
    assert carved <= {row["text"] for row in rows[:100]}, "validation comes from the head"
    names = data.label_names
    streamed = list(data.splits["train"])
    texts = [row["text"] for row in streamed]
    assert Counter(texts) == Counter(row["text"] for row in rows if row["text"] not in carved)
    truth = {row["text"]: row["label"] for row in rows}
    assert all(names[row["labels"]] == truth[row["text"]] for row in streamed)
    assert texts != [row["text"] for row in rows if row["text"] not in carved], "read through a shuffle buffer"
    data.splits["train"].set_epoch(1)
    again = [row["text"] for row in data.splits["train"]]
    assert again != texts and sorted(again) == sorted(texts), "each pass reshuffled, the same rows"
    decision = auto.choose(config, None, None, None, data, None)  # no pass over a stream to count or probe
    assert decision.chosen == "full" and "streamed" in decision.reason


def test_stream_read_by_two_dataloader_workers_gives_each_row_once(tiny_bert, tmp_path):
    rows = numbered_rows(200)
    train = write_rows(tmp_path / "train.csv", rows)
    _, data = load(stream_flags(tiny_bert, tmp_path / "o", train, "--max_steps", "5", "--stream_head_rows", "60"))
    loader = torch.utils.data.DataLoader(data.splits["train"], batch_size=None, num_workers=2)
    texts = [row["text"] for row in loader]
    assert Counter(texts) == Counter(
        row["text"] for row in rows if row["text"] not in set(data.splits["validation"]["text"])
    )


def test_a_label_after_the_head_stops_the_run_naming_it(tiny_bert, tmp_path):
    rows = numbered_rows(120) + [{"text": "999 so so", "label": "neutral"}]
    train = write_rows(tmp_path / "train.csv", rows)
    _, data = load(stream_flags(tiny_bert, tmp_path / "o", train, "--max_steps", "5", "--stream_head_rows", "50"))
    with pytest.raises(DataError, match=r"'neutral'.*class_names"):
        list(data.splits["train"])
    dev = write_rows(tmp_path / "dev.csv", numbered_rows(30, seed=1, labels=("negative", "positive", "neutral")))
    _, named = load(
        stream_flags(
            tiny_bert,
            tmp_path / "o",
            train,
            "--max_steps",
            "5",
            "--stream_head_rows",
            "50",
            "--class_names",
            "negative",
            "positive",
            "neutral",
            "--validation_file",
            str(dev),
        )
    )
    assert sum(named.label_names[row["labels"]] == "neutral" for row in named.splits["train"]) == 1


def test_streaming_refuses_what_a_stream_cannot_do(tiny_bert, tmp_path):
    train = write_rows(tmp_path / "train.csv", numbered_rows(40))
    with pytest.raises(ConfigError, match="max_steps.*time_budget"):
        parse_config(stream_flags(tiny_bert, tmp_path / "o", train))
    with pytest.raises(ConfigError, match=r"lp_ft cannot train on a stream.*full"):
        parse_config(stream_flags(tiny_bert, tmp_path / "o", train, "--max_steps", "5") + ["--strategy", "lp_ft"])
    multi = write_rows(tmp_path / "multi.csv", [{"text": f"{i} words", "label": "a;b"} for i in range(40)])
    with pytest.raises(DataError, match="multi-label"):
        load(stream_flags(tiny_bert, tmp_path / "o", multi, "--max_steps", "5", "--label_separator", ";"))
    empty_text = write_rows(tmp_path / "gap.csv", numbered_rows(60) + [{"text": "", "label": "positive"}])
    _, data = load(stream_flags(tiny_bert, tmp_path / "o", empty_text, "--max_steps", "5", "--stream_head_rows", "30"))
    with pytest.raises(DataError, match="empty value in text column 'text'"):
        list(data.splits["train"])


def test_dataset_folder_of_several_files_streams_with_or_without_a_validation_split(tiny_bert, tmp_path):
    folder = tmp_path / "dataset"
    folder.mkdir()
    first, second = numbered_rows(80), numbered_rows(80, seed=1)[::-1]
    write_rows(folder / "train-00000-of-00002.csv", first)
    write_rows(folder / "train-00001-of-00002.csv", [{**row, "text": "b" + row["text"]} for row in second])
    flags = [
        "--model",
        "unused",
        "--dataset",
        str(folder),
        "--streaming",
        "true",
        "--max_steps",
        "5",
        "--stream_head_rows",
        "100",
        "--output_dir",
        str(tmp_path / "o"),
    ]
    _, carved = load(flags)  # the head spans both files; exactly its carved rows are left out
    held_out = set(carved.splits["validation"]["text"])
    assert len(held_out) == 20
    assert Counter(row["text"] for row in carved.splits["train"]) == Counter(
        text for text in [r["text"] for r in first] + ["b" + r["text"] for r in second] if text not in held_out
    )
    write_rows(folder / "validation.csv", numbered_rows(30, seed=2))
    _, data = load(flags)
    assert len(data.splits["validation"]) == 30 and len(list(data.splits["train"])) == 160


@pytest.mark.e2e
def test_streamed_text_run_saves_a_pipeline_model(tiny_bert, tmp_path):
    train = write_rows(tmp_path / "train.parquet", numbered_rows(400))
    out = tmp_path / "run"
    main(stream_flags(tiny_bert, out, train, "--max_steps", "20", "--stream_head_rows", "200"))
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 20
    evaluated = [entry["step"] for entry in state["log_history"] if "eval_loss" in entry]
    assert evaluated[:3] == [2, 4, 6], "evaluated every tenth of the steps"
    classify = pipeline("text-classification", model=str(out), device="cpu")
    assert classify("a wonderful film")[0]["label"] in {"negative", "positive"}
    saved = (out / "hftransfer_config.yaml").read_text()
    assert "streaming: true" in saved and "eval_steps: 2 (a stream has no epochs" in saved


@pytest.mark.e2e
def test_time_budget_fits_a_stream_without_max_steps(tiny_bert, tmp_path):
    train = write_rows(tmp_path / "train.csv", numbered_rows(300))
    out = tmp_path / "run"
    started = time.monotonic()
    main(stream_flags(tiny_bert, out, train, "--time_budget", "25s", "--stream_head_rows", "100"))
    took = time.monotonic() - started
    state = json.loads((out / "trainer_state.json").read_text())
    assert 6 < state["global_step"] < 1_000_000
    assert state["eval_steps"] == state["save_steps"] < 100_000, "evaluations spread over the steps that fit"
    assert sum("eval_loss" in entry for entry in state["log_history"]) >= 2
    assert took < 25 + 60, (
        f"{took:.0f} s for a 25 s budget (plus the final evaluation and loading, on a loaded machine)"
    )
    pipeline("text-classification", model=str(out), device="cpu")


@pytest.mark.e2e
def test_a_pass_over_the_stream_ends_when_its_rows_do(tiny_bert, tmp_path, monkeypatch):
    """A stream has no length, so Trainer counts each pass as max_steps long; past the stream's end it must not
    go on asking for batches for the rest of that range (transformers 5.24 does: seconds per pass)."""
    from transformers import Trainer

    asked = []
    original = Trainer.get_batch_samples

    def counted(self, *args, **kwargs):
        asked.append(self.state.global_step)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "get_batch_samples", counted)
    train = write_rows(tmp_path / "train.csv", numbered_rows(120))  # 96 streamed rows: 6 steps of 16 per pass
    out = tmp_path / "run"
    main(stream_flags(tiny_bert, out, train, "--max_steps", "30", "--stream_head_rows", "120"))
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 30
    passes = 30 // 6
    assert len(asked) <= 30 + passes, f"{len(asked)} batch requests for 30 steps over {passes} passes"


@pytest.mark.e2e
def test_streamed_image_listing_trains(timm_weights, tmp_path):
    rows = []
    for i in range(40):
        label = ("red", "blue")[i % 2]
        make_image(tmp_path / "images" / f"{label}_{i}.png", (220, 30, 30) if label == "red" else (30, 30, 220))
        rows.append({"path": f"images/{label}_{i}.png", "label": label})
    listing = write_rows(tmp_path / "train.csv", rows)
    out = tmp_path / "run"
    main(
        [
            "--task",
            "image-classification",
            "--timm_arch",
            "test_efficientnet",
            "--weights",
            str(timm_weights),
            "--train_file",
            str(listing),
            "--streaming",
            "true",
            "--max_steps",
            "4",
            "--stream_head_rows",
            "20",
            "--per_device_train_batch_size",
            "4",
            "--output_dir",
            str(out),
            "--disable_tqdm",
            "true",
            "--dataloader_pin_memory",
            "false",
        ]
    )
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 4
    classify = pipeline("image-classification", model=str(out), device="cpu")
    assert classify(str(tmp_path / "images" / "red_0.png"))[0]["label"] in {"red", "blue"}
    with pytest.raises(DataError, match="data_dir"):
        load(
            [
                "--task",
                "image-classification",
                "--timm_arch",
                "test_efficientnet",
                "--data_dir",
                str(tmp_path),
                "--streaming",
                "true",
                "--max_steps",
                "4",
                "--output_dir",
                str(tmp_path / "o"),
            ]
        )


@pytest.mark.e2e
def test_two_processes_each_read_their_own_batches_of_the_stream(tiny_bert, tmp_path):
    import subprocess
    import sys

    from conftest import REPO, subprocess_env

    from hftransfer.cli.launch import resolve_config_file

    train = write_rows(tmp_path / "train.csv", numbered_rows(200))
    out = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(resolve_config_file("cpu")),
            "--num_processes",
            "2",
            "--num_cpu_threads_per_process",
            "1",
            "-m",
            "hftransfer.train",
            *stream_flags(
                tiny_bert,
                out,
                train,
                "--max_steps",
                "6",
                "--stream_head_rows",
                "100",
                "--per_device_train_batch_size",
                "8",
            ),
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=600,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 6 and state["train_batch_size"] == 8
    assert done.stdout.count("hftransfer · ") == 1, "rank 0 alone writes and reports"


@pytest.mark.e2e
def test_stored_images_stream_and_keep_their_bytes(timm_weights, tmp_path):
    import io

    from datasets import Dataset, Image
    from PIL import Image as PILImage

    def jpeg(colour) -> bytes:
        buffer = io.BytesIO()
        PILImage.new("RGB", (40, 32), colour).save(buffer, format="JPEG", quality=90)
        return buffer.getvalue()

    stored = [jpeg((200 + i % 40, 30, 30) if i % 2 else (30, 30, 200 + i % 40)) for i in range(60)]
    table = Dataset.from_dict(
        {"image": [{"bytes": b, "path": None} for b in stored], "label": [("blue", "red")[i % 2] for i in range(60)]}
    ).cast_column("image", Image())
    train = tmp_path / "train.parquet"
    table.to_parquet(str(train))
    flags = [
        "--task",
        "image-classification",
        "--timm_arch",
        "test_efficientnet",
        "--weights",
        str(timm_weights),
        "--train_file",
        str(train),
        "--streaming",
        "true",
        "--max_steps",
        "2",
        "--stream_head_rows",
        "30",
        "--per_device_train_batch_size",
        "4",
        "--output_dir",
        str(tmp_path / "run"),
        "--disable_tqdm",
        "true",
    ]
    _, data = load(flags)
    carved = data.splits["validation"].cast_column("image", Image(decode=False))["image"]
    assert len(carved) == 6 and all(item["bytes"] in stored for item in carved), "not re-encoded"
    assert sum(1 for _ in data.splits["train"]) == 54
    main(flags)
    assert json.loads((tmp_path / "run" / "trainer_state.json").read_text())["global_step"] == 2
