"""Training batches of similar lengths, in random order: less padding, batches still random.

Padding each batch to its longest text (dynamic padding) still pads a 5-token phrase to the 60 tokens of the
longest one beside it. Grouping texts of similar length into a batch removes most of that padding, but how the
grouping is done matters for accuracy. transformers' ``group_by_length`` sorts mega-batches of 50 batches by
length and trains them in that order, long to short: 50 consecutive steps whose lengths (and so whose gradients)
are correlated. Measured here, it doubled throughput but cost 1.4 points of SST-2 dev accuracy.

``LengthBuckets`` keeps the grouping and drops the ordering, as bucketing iterators (AllenNLP's, fairseq's)
do: the examples are shuffled, each window of ``window`` batches is sorted by length and cut into batches, and
then *all batches* of the epoch are shuffled. Each batch is a random draw of similar-length examples and
consecutive batches are unrelated. The order is a function of the seed and the epoch only, so a resumed run
replays it.
"""

from __future__ import annotations

import pyarrow.compute as pc
import torch
from torch.utils.data import Sampler


class LengthBuckets(Sampler[int]):
    """Indices whose consecutive ``batch_size`` groups are batches of similar lengths, the batches in random order."""

    def __init__(self, lengths: list[int] | torch.Tensor, batch_size: int, window: int, seed: int):
        self.lengths = torch.as_tensor(lengths)
        self.batch_size, self.window, self.seed = batch_size, window, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # accelerate's data loader calls it at every epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator)
        span = self.batch_size * self.window
        batches = []
        for start in range(0, len(order), span):
            chunk = order[start : start + span]
            # stable sort: equal lengths keep their random order
            chunk = chunk[torch.argsort(self.lengths[chunk], stable=True)]
            batches += list(chunk.split(self.batch_size))
        # The data loader cuts batches from consecutive indices: a short batch (the last window's remainder) stays
        # last, as in a plain random epoch, or every batch after it would straddle two buckets.
        short = [batches.pop()] if len(batches[-1]) < self.batch_size else []
        for index in torch.randperm(len(batches), generator=generator).tolist():
            yield from batches[index].tolist()
        for batch in short:
            yield from batch.tolist()


def token_lengths(dataset) -> torch.Tensor | None:
    """Each example's token count, read through Arrow (not a Python list per row); None when the dataset holds no
    ``input_ids`` (images)."""
    if "input_ids" not in dataset.column_names:
        return None
    return torch.from_numpy(pc.list_value_length(dataset.with_format("arrow")["input_ids"]).to_numpy().copy())
