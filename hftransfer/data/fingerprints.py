"""What makes two examples exact duplicates: the same file bytes (images) or the same normalised text.

Texts are compared Unicode-normalised (NFKC), case-folded, with punctuation and repeated spaces taken out: a
question copied into the test set with another capital letter or a missing "?" is the same question.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

import numpy as np
from PIL import Image

from hftransfer.data.labels import column_values

_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class NearRule:
    """Two examples are near duplicates at or above ``certain`` cosine similarity (centred features), or from
    ``candidate`` up when ``same_picture`` (perceptual hashes) confirms it."""

    certain: float
    candidate: float


# From benchmarks/audit.py (docs/audit.md). Images (EfficientNet-Lite0, Caltech-101): copies resized to 85% and
# re-encoded lie at 0.86-1.0, real duplicates in the set from 0.90 up, different photos of one subject (a face, a
# soccer ball) from 0.897 down; perceptual hashes put every copy within 2 bits and those photos 12 or more apart.
# Texts (MiniLM, TREC-50): re-cased and re-punctuated copies are exact once normalised; reworded questions ("What
# organization …" / "Which organization …") lie at 0.985-0.996, the closest different questions below 0.97.
NEAR_RULES = {"image": NearRule(certain=0.95, candidate=0.85), "text": NearRule(certain=0.97, candidate=0.97)}


def text_key(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in folded)
    return _SPACES.sub(" ", kept).strip()


def file_key(path: str) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def image_key(value) -> str:
    """A path, or an image held in the dataset (``{"bytes", "path"}``)."""
    if isinstance(value, dict):
        return hashlib.sha1(value["bytes"]).hexdigest() if value.get("bytes") else file_key(value["path"])
    return file_key(value)


def shown_values(ds, columns: dict) -> list:
    """Each example as a person sees it: an image path (or stored image), or its text (a pair joined by ‖)."""
    if "image" in columns:
        return column_values(ds, columns["image"])
    texts = column_values(ds, columns["text"])
    if columns.get("text_pair"):
        return [f"{a} ‖ {b}" for a, b in zip(texts, column_values(ds, columns["text_pair"]))]
    return texts


def example_keys(values: list, columns: dict) -> list[str]:
    return [image_key(v) for v in values] if "image" in columns else [text_key(v) for v in values]


def perceptual_hash(value) -> np.ndarray:
    """63 bits that survive resizing and re-encoding: the 8×8 lowest frequencies of the 32×32 grey image's DCT
    (the constant one left out), each above or below their median (pHash). A copy resized to 85% and saved as a
    JPEG of quality 70 lies 0-2 bits from its original; different photos of one subject 12 or more."""
    from scipy.fft import dctn

    from hftransfer.data.images import open_image

    grey = np.asarray(open_image(value).convert("L").resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float64)
    low = dctn(grey, norm="ortho")[:8, :8].ravel()[1:]
    return low > np.median(low)


def near_copies(reference: np.ndarray, queries: np.ndarray, threshold: float) -> np.ndarray:
    """For each query row, whether some reference row lies at or above ``threshold`` cosine similarity (features
    centred on both sets' mean, as the audit compares them)."""
    mean = np.concatenate([reference, queries]).mean(0)

    def unit(rows):
        rows = rows - mean
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)

    return (unit(queries) @ unit(reference).T).max(1) >= threshold
