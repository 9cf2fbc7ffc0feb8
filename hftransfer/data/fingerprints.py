"""What makes two examples exact duplicates: the same file bytes (images) or the same normalised text.

Texts are compared Unicode-normalised (NFKC), case-folded, with punctuation and repeated spaces taken out: a
question copied into the test set with another capital letter or a missing "?" is the same question.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import numpy as np
from PIL import Image

from hftransfer.data.labels import column_values

_SPACES = re.compile(r"\s+")


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
