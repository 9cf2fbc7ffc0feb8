"""``hftransfer predict``: top-k labels for images or texts, with the PyTorch model or its ONNX export.

Both backends share the task's prediction encoder (the evaluation preprocessing the model was scored
with), so PyTorch and ONNX predictions differ only by the runtimes' arithmetic.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hftransfer.artifacts.run_dir import (
    ONNX_DIR,
    ONNX_FILE,
    ONNX_VARIANTS,
    RunDirError,
    open_run,
)
from hftransfer.config.commands import PredictOptions
from hftransfer.errors import HftransferError
from hftransfer.files.atomic import write_text_atomically
from hftransfer.files.output_policy import Input, Output, check_output
from hftransfer.files.readers import onnx_session

OUTPUT_FORMATS = (".csv", ".json", ".jsonl")


class PredictError(HftransferError):
    """Bad predict arguments (output file exists, unknown format …)."""


class TorchBackend:
    name = "pytorch"

    def __init__(self, model, device: str | None = None):
        """``device``: where the model runs (default: a GPU when there is one)."""
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device)

    @torch.no_grad()
    def logits(self, inputs: dict) -> np.ndarray:
        return self.model(**{k: v.to(self.device) for k, v in inputs.items()}).logits.float().cpu().numpy()


class OnnxBackend:
    name = "onnx"

    def __init__(self, onnx_path: Path, providers: list[str] | None = None):
        """``providers``: ONNX Runtime's execution providers (default: every one available)."""
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise PredictError("running an ONNX model needs onnxruntime: pip install 'hftransfer[export]'") from None
        self.session = onnx_session(onnx_path, providers)
        self.names = [i.name for i in self.session.get_inputs()]

    def logits(self, inputs: dict) -> np.ndarray:
        return self.session.run(["logits"], {n: inputs[n].numpy() for n in self.names})[0]


def _require_variant(folder: Path, variant: str, run: Path) -> Path:
    """The variant's file in ``folder``; refused, with the export command that writes it, when it is missing."""
    path = folder / ONNX_VARIANTS[variant]
    if not path.is_file():
        how = "" if variant == "fp32" else f" --quantize {variant}"
        raise RunDirError(f"{str(folder)!r} has no {path.name}; run `hftransfer export {run}{how}` first")
    return path


@dataclass
class Prediction:
    input: str
    labels: list[str]
    scores: list[float]


def onnx_model(path: str | Path, onnx: bool | str) -> tuple[Path, Path | None, str]:
    """(folder to open as the run, ONNX file to run or None for PyTorch, the ONNX variant): an ONNX export folder
    runs its export; a run folder runs PyTorch, or with ``onnx`` (True or ``"fp32"``, ``"int8"``, ``"fp16"``) its
    export in ``onnx/``."""
    root = Path(path).expanduser()
    variant = "fp32" if onnx is True or onnx is False else onnx
    if variant not in ONNX_VARIANTS:
        raise PredictError(f"unknown ONNX variant {onnx!r}; valid: {', '.join(ONNX_VARIANTS)}")
    if (root / ONNX_FILE).is_file():
        return root, _require_variant(root, variant, root.parent), variant
    if onnx:
        return root / ONNX_DIR, _require_variant(root / ONNX_DIR, variant, root), variant
    return root, None, variant


def open_predictor(path: str | Path, onnx: bool | str = False, trust_remote_code: bool = False):
    """(run, backend): an ONNX export folder (or ``--onnx [fp32|int8]`` on a run with one) runs on ONNX Runtime."""
    folder, onnx_file, _ = onnx_model(path, onnx)
    if onnx_file is not None:
        return open_run(folder, require_weights=False, trust_remote_code=trust_remote_code), OnnxBackend(onnx_file)
    run = open_run(folder, trust_remote_code=trust_remote_code)
    return run, TorchBackend(run.load_model())


def predict_inputs(
    path: str | Path,
    items: list[str],
    options: dict | None = None,
    top_k: int = PredictOptions.top_k,
    batch_size: int = PredictOptions.batch_size,
    onnx: bool | str = False,
    trust_remote_code: bool = False,
) -> list[Prediction]:
    """Top-k predictions for every input (multi-label: every label above its threshold, whatever ``top_k``); every
    input is read and checked before the first batch runs."""
    PredictOptions(top_k, batch_size)  # every value checked before any work
    if not items and not any((options or {}).get(k) for k in ("text_file", "csv")):
        raise PredictError(
            "nothing to predict: give inputs (image files, folders, globs or texts), --text_file or --csv"
        )
    run, backend = open_predictor(path, onnx, trust_remote_code)
    if run.task.read_prediction_inputs is None:
        raise RunDirError(f"task {run.task.name!r} has no prediction inputs reader")
    inputs = run.task.read_prediction_inputs(items, options or {})
    if not inputs:
        raise PredictError("nothing to predict: the inputs given hold no example")
    encode = run.task.prediction_encoder(run.load_processor())
    choose = _above_thresholds(run.thresholds()) if run.multi_label else _top(min(top_k, len(run.label_names)))
    results = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start : start + batch_size]
        logits = backend.logits(encode([payload for _, payload in chunk]))
        scores = sigmoid(logits) if run.multi_label else softmax(logits)
        for (name, _), row in zip(chunk, scores):
            ids = choose(row)
            results.append(Prediction(name, [run.label_names[i] for i in ids], [float(row[i]) for i in ids]))
    return results


def _top(k: int):
    """Single label: the k most probable classes."""
    return lambda row: np.argsort(-row, kind="stable")[:k]


def _above_thresholds(thresholds: list[float]):
    """Multi-label: every label whose score reaches its threshold, the highest score first (possibly none)."""
    limits = np.asarray(thresholds)
    return lambda row: [i for i in np.argsort(-row, kind="stable") if row[i] >= limits[i]]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def check_output_path(
    output: str | Path | None, overwrite: bool, reads: dict[str, str | Path | None] | None = None
) -> Path | None:
    """The predictions file, checked by the output policy before any work: a file (not a folder), of a known kind,
    none of the files or folders the command reads (``reads``: flag -> path), replaced only with ``overwrite``."""
    if output is None:
        return None
    path = Path(output)
    if path.suffix.lower() not in OUTPUT_FORMATS:
        raise PredictError(
            f"unsupported output file type {path.suffix or '(none)'!r}; valid: {', '.join(OUTPUT_FORMATS)}"
        )
    inputs = [Input(flag, value, outputs_inside=flag == "model_dir") for flag, value in (reads or {}).items()]
    path = check_output(Output("--output", path, folder=False), inputs)
    if path.exists() and not overwrite:
        raise PredictError(f"{str(path)!r} exists; pass --overwrite to replace it")
    if not path.parent.is_dir():
        raise PredictError(f"--output {str(path)!r}: its folder {str(path.parent)!r} does not exist; create it first")
    return path


def write_predictions(predictions: list[Prediction], path: Path) -> Path:
    """CSV (input, label_1, score_1, …) or JSON / JSON lines; written to a temporary name, then renamed."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        k = max((len(p.labels) for p in predictions), default=0)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["input", *[f"{kind}_{i}" for i in range(1, k + 1) for kind in ("label", "score")]])
        for p in predictions:
            writer.writerow([p.input, *[v for pair in zip(p.labels, (f"{s:.6f}" for s in p.scores)) for v in pair]])
        text = buffer.getvalue()
    else:
        rows = [
            {
                "input": p.input,
                "predictions": [{"label": label, "score": score} for label, score in zip(p.labels, p.scores)],
            }
            for p in predictions
        ]
        text = json.dumps(rows, indent=2) if suffix == ".json" else "".join(json.dumps(r) + "\n" for r in rows)
    return write_text_atomically(path, text)
