"""How a finished text-classification model reads its inputs: texts for ``hftransfer predict`` (checked before any
prediction runs), the encoder that turns them into tensors, stand-in texts for export checks, and how reports name
examples.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from hftransfer.data import tables
from hftransfer.data.tables import DataError

TEXT_COLUMNS = ("text", "sentence", "content", "review", "document")


def model_max_length(tokenizer, model_config=None) -> int:
    """The longest input the model accepts (tokenizers report a huge sentinel when they do not know)."""
    limits = [tokenizer.model_max_length]
    positions = getattr(model_config, "max_position_embeddings", None)
    if positions:
        limits.append(positions)
    limit = min(limits)
    return limit if limit < 100_000 else 512


def describe_examples(data, split: str) -> list[str]:
    """How the eval report names each example of a split: its text (a pair joined by ' ||| ')."""
    ds = data.splits[split]
    texts = list(ds[data.columns["text"]])
    if data.columns.get("text_pair"):
        texts = [f"{a} ||| {b}" for a, b in zip(texts, ds[data.columns["text_pair"]])]
    return texts


def read_prediction_inputs(items: list[str], options: dict) -> list[tuple[str, str]]:
    """Texts given as arguments, one per line of ``--text_file``, or a column of ``--csv`` -> (name, text)."""
    texts = list(items)
    if options.get("text_file"):
        path = Path(options["text_file"]).expanduser()
        if not path.is_file():
            raise DataError(f"text_file not found: {str(path)!r}")
        tables.check_utf8(path)
        texts += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if options.get("csv"):
        path = Path(options["csv"]).expanduser()
        if not path.is_file():
            raise DataError(f"csv file not found: {str(path)!r}")
        tables.check_utf8(path)
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            column = options.get("column") or next((c for c in TEXT_COLUMNS if c in (reader.fieldnames or [])), None)
            if column not in (reader.fieldnames or []):
                raise DataError(
                    f"column {column!r} not in {str(path)!r}; set --column to one of: "
                    f"{', '.join(reader.fieldnames or [])}"
                )
            texts += [row[column] for row in reader if row[column] is not None]
    if not texts:
        raise DataError("no texts to classify: give texts as arguments, --text_file or --csv")
    return [(text, text) for text in texts]


class PredictionEncoder:
    """Texts -> token ids, truncated to the model's limit and padded per batch."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.max_length = model_max_length(tokenizer)

    def __call__(self, payloads: list[str]) -> dict[str, torch.Tensor]:
        return dict(
            self.tokenizer(
                list(payloads), truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
            )
        )


def sample_payloads(n: int = 2) -> list[str]:
    """Stand-in inputs of different lengths (for an export check when no real data is at hand)."""
    return ["a short one", "a rather longer sentence, with punctuation and several more words in it"][:n]
