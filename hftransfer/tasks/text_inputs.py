"""How a finished text-classification model reads its inputs: texts for ``hftransfer predict`` (checked before any
prediction runs), the encoder that turns them into tensors, stand-in texts for export checks, and how reports name
examples.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch

from hftransfer.data.images import IMAGE_EXTENSIONS
from hftransfer.data.tables import DataError
from hftransfer.files import readers

TEXT_COLUMNS = ("text", "sentence", "content", "review", "document")
# Files that are never a text to classify (besides images): models, archives, audio and video, documents.
BINARY_SUFFIXES = {
    ".onnx",
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".zip",
    ".gz",
    ".tar",
    ".npy",
    ".parquet",
    ".pdf",
    ".mp3",
    ".wav",
    ".flac",
    ".mp4",
    ".mov",
    ".avi",
}


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
    """Texts given as arguments, one per line of ``--text_file``, or a column of ``--csv`` -> (name, text).

    An argument is always a text: a file is read only when named by ``--text_file`` or ``--csv``. An argument that
    names an existing folder or a file of another kind (a photo) is refused: classifying its path as a sentence
    would answer a question nobody asked. ``options["flag"]`` names the option a file came from in errors."""
    _refuse_paths_of_other_kinds(items)
    texts = list(items)
    if options.get("text_file"):
        texts += readers.text_lines(options["text_file"], options.get("flag", "--text_file"), "text file")
    if options.get("csv"):
        texts += _csv_column(options["csv"], options.get("column"), options.get("flag", "--csv"))
    if not texts:
        raise DataError("no texts to classify: give texts as arguments, --text_file or --csv")
    return [(text, text) for text in texts]


def _refuse_paths_of_other_kinds(items: list[str]) -> None:
    for number, item in enumerate(items, 1):
        if not item.strip():
            raise DataError(f"input {number} is an empty text: there is nothing to classify")
        if "\n" in item or len(item) > 4096:
            continue  # a text, however it looks
        path = Path(item).expanduser()
        try:
            is_dir, is_file = path.is_dir(), path.is_file()
        except OSError:  # a name too long for the file system: a text
            continue
        if is_dir:
            raise DataError(
                f"{item!r} is a folder, and this model classifies texts; give texts as arguments, or a file of "
                "texts with --text_file (one per line) or --csv"
            )
        if is_file and (path.suffix.lower() in IMAGE_EXTENSIONS or path.suffix.lower() in BINARY_SUFFIXES):
            raise DataError(
                f"{item!r} is a {path.suffix.lower()} file, and this model classifies texts; give texts as "
                "arguments, or a file of texts with --text_file (one per line) or --csv"
            )


def _csv_column(file: str, column: str | None, flag: str) -> list[str]:
    text = readers.utf8_text(file, flag, "CSV/TSV file")  # read once: checked, then parsed
    reader = csv.DictReader(
        io.StringIO(text, newline=""), delimiter="\t" if str(file).lower().endswith(".tsv") else ","
    )
    column = column or next((c for c in TEXT_COLUMNS if c in (reader.fieldnames or [])), None)
    if column not in (reader.fieldnames or []):
        raise DataError(
            f"column {column!r} not in {str(file)!r}; set --column to one of: {', '.join(reader.fieldnames or [])}"
        )
    return [row[column] for row in reader if row[column] is not None]


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
