"""Which strategy suits the data, from its size and how well frozen features already separate the classes."""

from __future__ import annotations

# Below this many training examples the probe wins or ties (hymenoptera, 245 images: linear_probe 0.954,
# lp_ft 0.954, full 0.941); with more data, fine-tuning pays (SST-2, 20,000 phrases: full 0.873, lora 0.864).
SMALL_DATA = 1000
LARGE_DATA = 10000
SEPARABLE = 0.95  # a held-out linear probe this accurate leaves little for fine-tuning to add


def recommend_strategy(num_train: int, probe_accuracy: float | None) -> str:
    """The strategy `hftransfer rank` recommends for a backbone: its name in the registry."""
    if num_train < SMALL_DATA or (probe_accuracy is not None and probe_accuracy >= SEPARABLE):
        return "linear_probe"
    return "lp_ft" if num_train < LARGE_DATA else "full"
