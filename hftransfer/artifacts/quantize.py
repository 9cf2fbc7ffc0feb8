"""Quantized exports (``hftransfer export RUN --quantize int8|fp16``), kept only when they score as well as PyTorch.

ONNX Runtime's own quantization tools (``onnxruntime.quantization``; Optimum's quantizer wraps the same calls
behind its own configs, and nothing here needs more than they offer):

- a model without image inputs (a text encoder): **dynamic** int8, weights int8 per channel and activations
  quantized per batch at run time: ONNX Runtime's recommended mode for transformer encoders, whose time is in
  their matrix products, with no calibration data needed;
- an image model: **static** int8 in QDQ form, weights per channel, activation ranges calibrated on examples drawn
  (seeded) from the run's own training split: convolutions need fixed activation ranges to run in int8.

``fp16`` (ONNX Runtime's ``float16`` converter, inputs and outputs kept fp32) halves the file for GPUs, whose
tensor cores run it fast; ONNX Runtime's CPU provider has few fp16 kernels and casts around the rest, so on a CPU it
is slower than fp32, as its measured latency shows. int8 is the CPU's format.

**The gate.** The quantized model and the PyTorch model both score the run's validation split (and its test split
when it has one): accuracy for single-label runs, micro-F1 at the saved thresholds for multi-label ones. A drop past
``max_accuracy_drop`` (one point by default) on any split refuses the export with both figures, and nothing is
left behind. The report records, for PyTorch, ONNX fp32 and ONNX int8, the file size, the score, the batch-1
latency (p50, p95) and the batch-32 throughput, measured on the machine that exported.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np

from hftransfer.artifacts.predict import OnnxBackend, TorchBackend, sigmoid
from hftransfer.artifacts.run_dir import ONNX_VARIANTS, FinishedRun
from hftransfer.data.labels import LABELS, LabelledData, column_values
from hftransfer.errors import HftransferError

CALIBRATION_EXAMPLES = 64
LATENCY_RUNS, THROUGHPUT_BATCH, THROUGHPUT_RUNS = 50, 32, 5
SCORE_BATCH = 32
CPU_ONLY = ["CPUExecutionProvider"]


class QuantizeError(HftransferError):
    """A quantized export that cannot be made or checked, or that loses accuracy past the allowed drop."""


def run_data(run: FinishedRun) -> LabelledData:
    """The data the run read, read once for the gate's splits, the calibration examples and the parity check."""
    if run.config is None or run.task.describe_examples is None:
        raise QuantizeError(
            "a quantized export is checked on the run's validation data, and this folder has no run config"
        )
    try:  # rebuilt as the run read it: a validation split carved from train is carved again
        data = run.task.load_data(run.config)
    except HftransferError as err:
        raise QuantizeError(
            f"a quantized export is checked on the run's validation data, which is not at hand: {err}"
        ) from None
    if data.label_names != run.label_names:
        raise QuantizeError(f"the run's data now has labels {data.label_names}, the model {run.label_names}")
    return data


def labelled_splits(run: FinishedRun, data: LabelledData) -> dict[str, tuple[list, np.ndarray]]:
    """``{split: (payloads, labels)}`` of the run's validation and test splits."""
    if data.columns.get("text_pair"):
        raise QuantizeError(
            "quantized export of text-pair models is not supported yet (its accuracy check reads single texts)"
        )
    found = {}
    for split in ("validation", "test"):
        if split in data.splits:
            labels = np.asarray(column_values(data.splits[split], LABELS))
            found[split] = (run.task.describe_examples(data, split), labels)
    if not found:
        raise QuantizeError("the run's data has no validation split to check the quantized export on")
    return found


def calibration_payloads(run: FinishedRun, data: LabelledData, limit: int = CALIBRATION_EXAMPLES) -> list:
    """Examples of the run's training split (seeded), for the static quantization's activation ranges."""
    split = "train" if "train" in data.splits else next(iter(data.splits))
    examples = run.task.describe_examples(data, split)
    return random.Random(0).sample(examples, min(limit, len(examples)))


def quantize_int8(fp32: Path, out: Path, static: bool, encode, calibration: list) -> str:
    """Write the int8 model to ``out``; returns how it was quantized."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = out.with_name(f"prepared_{out.name}")
    # the graph clean-up and ONNX shape inference ONNX Runtime asks for first; its symbolic shape inference stops on
    # the dynamic axes of torch.export's graphs ("Incomplete symbolic shape inference"), and quantization does
    # not need it
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    try:
        if not static:
            quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8, per_channel=True)
            return "dynamic int8 (weights per channel, activations per batch)"
        quantize_static(
            str(prepared),
            str(out),
            _Batches(encode, calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        return f"static int8 (QDQ, weights per channel, activations calibrated on {len(calibration)} training examples)"
    finally:
        prepared.unlink(missing_ok=True)


class _Batches:
    """ONNX Runtime's calibration reader: the examples, encoded as the model reads them, a few at a time."""

    def __init__(self, encode, payloads: list, batch: int = 8):
        self._batches = iter(
            [{k: v.numpy() for k, v in encode(payloads[i : i + batch]).items()} for i in range(0, len(payloads), batch)]
        )

    def get_next(self):
        return next(self._batches, None)


def score(logits_of, payloads: list, labels: np.ndarray, encode, thresholds: list[float] | None) -> float:
    """Accuracy (single label) or micro-F1 at the saved thresholds (multi-label) of ``logits_of(inputs)``."""
    logits = np.concatenate(
        [logits_of(encode(payloads[i : i + SCORE_BATCH])) for i in range(0, len(payloads), SCORE_BATCH)]
    )
    if thresholds is None:
        return float((logits.argmax(-1) == labels).mean())
    from sklearn.metrics import f1_score

    predicted = sigmoid(logits) >= np.asarray(thresholds)
    return float(f1_score(labels.astype(bool), predicted, average="micro", zero_division=0))


def speed(logits_of, payloads: list, encode) -> dict:
    """Batch-1 latency (p50, p95, ms) with the preprocessing (``latency_ms_*``: what a caller waits for) and of the
    model alone on inputs prepared once (``model_ms_*``), and batch-32 throughput (examples/s, preprocessing
    included) of ``logits_of``."""
    one = payloads[:1]
    prepared = encode(one)
    for _ in range(3):
        logits_of(encode(one))  # warm-up: allocations, kernel selection
    whole, model_only = [], []
    for _ in range(LATENCY_RUNS):
        started = time.perf_counter()
        logits_of(encode(one))
        whole.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        logits_of(prepared)
        model_only.append((time.perf_counter() - started) * 1000)
    batch = (payloads * (THROUGHPUT_BATCH // max(len(payloads), 1) + 1))[:THROUGHPUT_BATCH]
    started = time.perf_counter()
    for _ in range(THROUGHPUT_RUNS):
        logits_of(encode(batch))
    elapsed = time.perf_counter() - started
    return {
        "latency_ms_p50": float(np.percentile(whole, 50)),
        "latency_ms_p95": float(np.percentile(whole, 95)),
        "model_ms_p50": float(np.percentile(model_only, 50)),
        "model_ms_p95": float(np.percentile(model_only, 95)),
        "throughput_per_s": THROUGHPUT_BATCH * THROUGHPUT_RUNS / elapsed,
    }


def torch_logits(model):
    """``inputs -> logits`` of the PyTorch model, on the CPU the exports are measured on."""
    return TorchBackend(model, "cpu").logits


def onnx_logits(path: Path):
    """``inputs -> logits`` of an ONNX model on ONNX Runtime's CPU provider."""
    return OnnxBackend(path, CPU_ONLY).logits


def file_mb(path: Path) -> float:
    files = [path, path.with_name(f"{path.name}.data")]
    return sum(p.stat().st_size for p in files if p.is_file()) / 2**20


def quantized_model(kind: str, run: FinishedRun, data: LabelledData, fp32: Path, encode) -> str:
    """Write the ``kind`` model beside the fp32 one; returns how it was made."""
    out = fp32.with_name(ONNX_VARIANTS[kind])
    if kind == "fp16":
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        onnx.save(convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True), str(out))
        return "fp16 weights and activations (inputs and outputs fp32)"
    static = run.task.pixel_key is not None
    calibration = calibration_payloads(run, data) if static else []
    return quantize_int8(fp32, out, static, encode, calibration)


def add_quantized(
    run: FinishedRun, data: LabelledData, model, encode, fp32: Path, kind: str, max_accuracy_drop: float
) -> dict:
    """Quantize the checked fp32 export beside it (``ONNX_VARIANTS[kind]``), score it against PyTorch on the run's
    own splits (``data``: ``run_data``'s), refuse it past ``max_accuracy_drop``, and measure every variant; returns
    the report's entry."""
    splits = labelled_splits(run, data)
    mode = quantized_model(kind, run, data, fp32, encode)
    thresholds = run.thresholds() if run.multi_label else None
    metric = "micro_f1" if thresholds is not None else "accuracy"
    name, path = f"onnx_{kind}", fp32.with_name(ONNX_VARIANTS[kind])
    variants = {"pytorch": torch_logits(model), "onnx_fp32": onnx_logits(fp32), name: onnx_logits(path)}
    scores = {
        variant: {
            split: score(logits_of, payloads, labels, encode, thresholds)
            for split, (payloads, labels) in splits.items()
        }
        for variant, logits_of in variants.items()
    }
    for split in splits:
        before, after = scores["pytorch"][split], scores[name][split]
        if before - after > max_accuracy_drop:
            raise QuantizeError(
                f"{kind} export refused: {split} {metric} {after:.4f} against PyTorch's {before:.4f}, a drop of "
                f"{(before - after) * 100:.1f} points, past max_accuracy_drop {max_accuracy_drop:g}; nothing was "
                "written"
            )
    sizes = {
        "pytorch": sum(p.stat().st_size for p in run.path.glob("model*.safetensors")) / 2**20,
        "onnx_fp32": file_mb(fp32),
        name: file_mb(path),
    }
    sample = next(iter(splits.values()))[0][:THROUGHPUT_BATCH]
    measured = {
        variant: {"file_mb": sizes[variant], metric: scores[variant], **speed(logits_of, sample, encode)}
        for variant, logits_of in variants.items()
    }
    return {
        "kind": kind,
        "quantization": mode,
        "metric": metric,
        "max_accuracy_drop": max_accuracy_drop,
        "variants": measured,
    }
