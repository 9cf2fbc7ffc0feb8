"""Training batches of similar lengths in random order (``data/buckets.py``) and how the text task uses them."""

from __future__ import annotations

import random

import torch
from datasets import Dataset
from torch.utils.data import RandomSampler
from transformers import TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from hftransfer.data.buckets import LengthBuckets
from hftransfer.engine.trainer import TransferTrainer
from hftransfer.tasks.text_classification import TextClassificationArguments, train_sampler


def batches_of(sampler, batch_size: int) -> list[list[int]]:
    order = list(sampler)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def padded_tokens(batches, lengths) -> int:
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


def test_every_example_once_less_padding_and_batches_in_random_order():
    rng = random.Random(0)
    lengths = [rng.randint(3, 60) for _ in range(1000)]
    sampler = LengthBuckets(lengths, batch_size=32, window=8, seed=1)
    batches = batches_of(sampler, 32)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert all(len(b) == 32 for b in batches[:-1]) and len(batches[-1]) == 1000 % 32, "the short batch comes last"
    plain = batches_of(RandomSampler(range(1000), generator=torch.Generator().manual_seed(1)), 32)
    assert padded_tokens(batches, lengths) < 0.75 * padded_tokens(plain, lengths)
    # transformers' group_by_length trains its mega-batches long to short; these batches follow no length order
    longest = [max(lengths[i] for i in b) for b in batches[:-1]]
    assert longest != sorted(longest) and longest != sorted(longest, reverse=True)
    assert sum(a < b for a, b in zip(longest, longest[1:])) > len(longest) // 4, "lengths rise as often as they fall"


def test_order_depends_on_seed_and_epoch_only():
    lengths = list(range(200))
    first, again = LengthBuckets(lengths, 16, 4, seed=3), LengthBuckets(lengths, 16, 4, seed=3)
    assert list(first) == list(again), "a resumed run replays the epoch"
    epoch0 = list(first)
    first.set_epoch(1)
    assert list(first) != epoch0 and sorted(first) == sorted(epoch0)


def trainer_for(dataset, strategy: str = "random", window: int = 16, tmp_path=None):
    class Config:
        task = TextClassificationArguments(length_buckets=window)
        training = TrainingArguments(
            output_dir=str(tmp_path),
            train_sampling_strategy=strategy,
            report_to="none",
            per_device_train_batch_size=4,
            use_cpu=True,
        )

    model = torch.nn.Linear(2, 2)
    return TransferTrainer(
        model=model,
        args=Config.training,
        train_dataset=dataset,
        param_groups=lambda *a, **k: [],
        train_sampler=lambda ds, bs: train_sampler(Config, ds, bs),
    )


def test_text_training_uses_length_buckets_unless_the_user_chooses(tmp_path):
    dataset = Dataset.from_dict({"input_ids": [[1] * n for n in range(1, 41)], "labels": [0, 1] * 20})
    sampler = trainer_for(dataset, tmp_path=tmp_path)._get_train_sampler()
    assert isinstance(sampler, LengthBuckets) and sampler.lengths.tolist() == list(range(1, 41))
    assert isinstance(
        trainer_for(dataset, "group_by_length", tmp_path=tmp_path)._get_train_sampler(), LengthGroupedSampler
    )
    assert isinstance(trainer_for(dataset, window=0, tmp_path=tmp_path)._get_train_sampler(), RandomSampler)
