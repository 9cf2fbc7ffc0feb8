"""``hftransfer export``: ONNX (checked against PyTorch on real inputs before it is kept).

``torch.onnx.export(dynamo=True)`` traces the model with ``torch.export``, so shape-dependent Python in
modern transformers models (attention-mask handling) becomes real graph logic; the older TorchScript
exporter baked one sequence length's branch into the graph (MiniLM logits off by 0.5 at another length).
Which axes are dynamic comes from the task (``Task.input_axes``: the batch axis, and the sequence axis of
text inputs). ``--overwrite`` replaces the export's own files in the target folder and nothing else.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from hftransfer.artifacts.export_card import record_in_card
from hftransfer.artifacts.predict import sigmoid
from hftransfer.artifacts.quantize import (
    add_quantized,
    onnx_logits,
    run_data,
    torch_logits,
)
from hftransfer.artifacts.run_dir import ONNX_DIR, ONNX_FILE, ONNX_VARIANTS, FinishedRun, open_run
from hftransfer.config.commands import ATOL, MAX_ACCURACY_DROP, ExportOptions
from hftransfer.config.recipes import CONFIG_FILE
from hftransfer.errors import HftransferError
from hftransfer.files.atomic import write_text_atomically
from hftransfer.files.output_policy import Input, Output, check_output
from hftransfer.files.written import record_entries, recorded_entries

logger = logging.getLogger("hftransfer")

CHECK_EXAMPLES = 16
EXPORT_REPORT = "export_report.json"
_KEPT_FILES = (
    "config.json",
    CONFIG_FILE,
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "merges.txt",
    "vocab.json",
    "sentencepiece.bpe.model",
    "spiece.model",
    "label_names.json",
)
_ONNX_FILES = (
    *ONNX_VARIANTS.values(),
    f"{ONNX_FILE}.data",
    EXPORT_REPORT,
)  # what an export writes besides the kept files


class ExportError(HftransferError):
    """An export that cannot be done or did not reproduce the PyTorch outputs."""


class LogitsOnly(torch.nn.Module):
    """The model as ``tensors -> logits``, the tensors in the order of ``names`` (ONNX needs a flat signature)."""

    def __init__(self, model, names: list[str]):
        super().__init__()
        self.model, self.names = model, list(names)

    def forward(self, *tensors):
        return self.model(**dict(zip(self.names, tensors))).logits


def real_payloads(run: FinishedRun, data=None, limit: int = CHECK_EXAMPLES) -> tuple[list, str]:
    """Inputs to check the export with: the run's own validation examples when its data is at hand (``data``: the
    run's data when it was read already, for a quantized export's check)."""
    if run.config is not None and run.task.describe_examples is not None:
        try:
            if data is None:
                data = run.task.load_data(run.config, model_labels=run.label_names)
            split = "validation" if "validation" in data.splits else next(iter(data.splits))
            examples = run.task.describe_examples(data, split)[:limit]
            if data.columns.get("text_pair"):
                raise ValueError("text pairs")  # describe_examples joins pairs for reading, not for the model
            return examples, f"{len(examples)} examples of the run's {split} data"
        except Exception as err:  # the data may live on another machine: fall back, and say so
            logger.warning("the run's data is not usable for the export check (%s); using stand-in inputs", err)
    return run.task.sample_payloads(2), "stand-in inputs (the run's data was not at hand)"


def export_run(
    run_dir: str | Path,
    fmt: str = "onnx",
    output: str | Path | None = None,
    atol: float = ATOL,
    overwrite: bool = False,
    trust_remote_code: bool = False,
    quantize: str | None = None,
    max_accuracy_drop: float = MAX_ACCURACY_DROP,
) -> Path:
    """Export the run's model; returns the folder with ``model.onnx`` (and, with ``quantize="int8"`` or ``"fp16"``,
    ``model_int8.onnx`` or ``model_fp16.onnx``, see ``artifacts/quantize.py``) and the files to run it."""
    ExportOptions(fmt, atol, quantize, max_accuracy_drop)  # every value checked before any work
    run = open_run(run_dir, trust_remote_code=trust_remote_code)
    target = Path(output) if output else run.path / ONNX_DIR
    _check_target(target, overwrite, run)
    model, encode = run.load_model(), run.task.prediction_encoder(run.load_processor())
    data = run_data(run) if quantize else None  # read once, for the quantization's check and the parity check
    payloads, source = real_payloads(run, data)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".onnx-", dir=target.parent))
    try:
        _export_onnx(
            model,
            run.task.input_axes,
            encode(payloads[:2] if len(payloads) >= 2 else payloads * 2),
            staging / ONNX_FILE,
        )
        check = parity_check(
            staging / ONNX_FILE, model, encode, payloads, atol, thresholds=run.thresholds() if run.multi_label else None
        )
        check["inputs"] = source
        if quantize:
            check["quantized"] = add_quantized(
                run, data, model, encode, staging / ONNX_FILE, quantize, max_accuracy_drop
            )
        for name in _KEPT_FILES:
            if (run.path / name).is_file():
                shutil.copy2(run.path / name, staging / name)
        write_text_atomically(staging / EXPORT_REPORT, json.dumps(check, indent=2))
        _replace_export(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    record_in_card(run.path, target, check)
    logger.info("ONNX model written to %s (max |logit difference| %.2e on %s)", target, check["max_abs_diff"], source)
    if quantize:
        made = check["quantized"]["variants"][f"onnx_{quantize}"]
        logger.info(
            "%s: %s, %.1f MiB, %s %s",
            ONNX_VARIANTS[quantize],
            check["quantized"]["quantization"],
            made["file_mb"],
            check["quantized"]["metric"],
            made[check["quantized"]["metric"]],
        )
    return target


def _check_target(target: Path, overwrite: bool, run: FinishedRun) -> None:
    """Refused before any work: a target that is no place to write (output policy), one holding files of the user's
    under the export's names, or an earlier export not to be replaced; no runtime."""
    writes = (*_ONNX_FILES, *_KEPT_FILES)
    check_output(Output("--output", target, writes=writes), [Input("the run", run.path, outputs_inside=True)])
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise ExportError(
            f"{str(target)!r} already exists; pass --overwrite to replace its export or --output elsewhere"
        )
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ExportError(
            "ONNX export needs onnx, onnxscript and onnxruntime: pip install 'hftransfer[export]'"
        ) from None


def parity_check(
    onnx_path: Path, model, encode, payloads: list, atol: float, thresholds: list[float] | None = None
) -> dict:
    """ONNX Runtime vs PyTorch logits on the real inputs, in two batch sizes; raises when they differ.

    Predictions agree when the top class is the same, or (multi-label, with ``thresholds``) when the same labels
    have sigmoid scores at or above their thresholds."""
    import onnxruntime as ort

    onnx_of, torch_of = onnx_logits(onnx_path), torch_logits(model)
    worst, agree, total = 0.0, 0, 0
    for batch in (payloads, payloads[:1]):  # all at once (padded texts) and one alone
        inputs = encode(batch)
        expected, got = torch_of(inputs), onnx_of(inputs)
        worst = max(worst, float(np.abs(got - expected).max()))
        agree += int(_same_predictions(got, expected, thresholds).sum())
        total += len(batch)
    result = {
        "format": "onnx",
        "max_abs_diff": worst,
        "atol": atol,
        "argmax_agreement": agree / total,
        "examples_checked": total,
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
    }
    if worst > atol or agree != total:
        raise ExportError(
            f"the ONNX model does not reproduce PyTorch: max |logit difference| {worst:.2e} "
            f"(tolerance {atol:.0e}), predictions agree on {agree}/{total}; nothing was written"
        )
    return result


def _same_predictions(got: np.ndarray, expected: np.ndarray, thresholds: list[float] | None) -> np.ndarray:
    if thresholds is None:
        return got.argmax(-1) == expected.argmax(-1)
    limits = np.asarray(thresholds)
    return ((sigmoid(got) >= limits) == (sigmoid(expected) >= limits)).all(axis=-1)


def _export_onnx(model, input_axes: dict[str, tuple[str, ...]], inputs: dict, path: Path) -> None:
    """``torch.onnx.export`` with the task's variable axes; one Dim object per axis name, shared by every input,
    so the exporter knows that the inputs have one batch size (and one sequence length)."""
    names = list(inputs)
    dims = {"batch": torch.export.Dim("batch"), "sequence": torch.export.Dim("sequence", max=_max_positions(model))}
    # one spec per tensor, packed as the one *tensors parameter of LogitsOnly.forward
    dynamic = tuple({axis: dims[name] for axis, name in enumerate(input_axes.get(key, ("batch",)))} for key in names)
    wrapper = LogitsOnly(model, names).eval()
    with torch.no_grad(), warnings.catch_warnings():
        # torch names shared dynamic axes once and warns about each duplicate name: noise, not a problem
        warnings.filterwarnings("ignore", message=".*shares the same shape constraints.*")
        program = torch.onnx.export(
            wrapper,
            tuple(inputs[k] for k in names),
            input_names=names,
            output_names=["logits"],
            dynamic_shapes=(dynamic,),
            dynamo=True,
            verbose=False,
        )
    program.save(str(path))


def _replace_export(staging: Path, target: Path) -> None:
    """Move the new export into ``target`` file by file, each recorded as hftransfer's; of what was there, only an
    earlier export's recorded files go."""
    target.mkdir(parents=True, exist_ok=True)
    new = sorted(staging.iterdir(), key=lambda p: p.name == ONNX_FILE)  # the model last
    record_entries(target, *(p.name for p in new))
    ours = recorded_entries(target)
    for name in (set(_ONNX_FILES) | set(_KEPT_FILES)) - {p.name for p in new}:
        if name in ours:
            (target / name).unlink(missing_ok=True)
    for path in new:
        os.replace(path, target / path.name)


def _max_positions(model) -> int:
    limit = getattr(model.config, "max_position_embeddings", None) or 512
    return int(limit)
