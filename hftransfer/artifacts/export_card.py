"""The model card's "Exported models" section: what ``hftransfer export`` wrote, with the figures it measured.

The card (``README.md`` of the run) is written by training; an export adds or replaces one section of it, between
two HTML comments, so a later export (``--overwrite``) replaces its rows and every other line of the card stays as
it was. The figures are the export report's (``export_report.json``): size, score on the run's own splits beside
PyTorch's, batch-1 latency and batch-32 throughput on the machine that exported.
"""

from __future__ import annotations

import os
from pathlib import Path

from hftransfer.artifacts.run_dir import ONNX_VARIANTS
from hftransfer.files.atomic import write_text_atomically
from hftransfer.training.modelcard import CARD_FILE

START, END = "<!-- hftransfer:exports -->", "<!-- /hftransfer:exports -->"
_NAMES = {"pytorch": "PyTorch (fp32)", **{f"onnx_{kind}": f"ONNX {kind}" for kind in ONNX_VARIANTS}}


def export_section(report: dict, files: dict[str, str]) -> str:
    """The section's markdown; ``files``: ``{variant: path shown}`` (``pytorch``, ``onnx_fp32``, ``onnx_int8`` …)."""
    quantized = report.get("quantized")
    lines = [START, "## Exported models", ""]
    if not quantized:
        lines += [
            f"`{files['onnx_fp32']}`: ONNX fp32, its logits within {report['max_abs_diff']:.1e} of PyTorch's on "
            f"{report['inputs']} (ONNX Runtime {report['onnxruntime']}).",
            END,
        ]
        return "\n".join(lines)
    metric = quantized["metric"]
    splits = list(next(iter(quantized["variants"].values()))[metric])
    lines += [
        f"Measured by `hftransfer export --quantize {quantized['kind']}` on the machine that exported "
        f"(ONNX Runtime {report['onnxruntime']}); {quantized['quantization']}, kept within "
        f"{quantized['max_accuracy_drop'] * 100:g} point(s) of PyTorch. Latency: one input at a time, preprocessing "
        "included.",
        "",
        "| model | file | size (MiB) | "
        + " | ".join(f"{split} {metric}" for split in splits)
        + " | batch-1 latency p50 / p95 (ms) | batch-32 throughput (inputs/s) |",
        "|---|---|---:|" + "---:|" * len(splits) + "---:|---:|",
    ]
    for variant, measured in quantized["variants"].items():
        scores = " | ".join(f"{measured[metric][split]:.4f}" for split in splits)
        lines.append(
            f"| {_NAMES.get(variant, variant)} | `{files.get(variant, '')}` | {measured['file_mb']:.1f} | {scores} | "
            f"{measured['latency_ms_p50']:.1f} / {measured['latency_ms_p95']:.1f} | "
            f"{measured['throughput_per_s']:.0f} |"
        )
    return "\n".join([*lines, END])


def record_in_card(run_path: Path, target: Path, report: dict) -> Path | None:
    """Add (or replace) the section in the run's card; None when the run has no card (a plain transformers folder)."""
    card = run_path / CARD_FILE
    if not card.is_file():
        return None
    shown = os.path.relpath(target, run_path) if target.resolve().is_relative_to(run_path.resolve()) else str(target)
    files = {
        "pytorch": "model.safetensors",
        **{f"onnx_{kind}": f"{shown}/{file}" for kind, file in ONNX_VARIANTS.items()},
    }
    section = export_section(report, files)
    text = card.read_text(encoding="utf-8")
    if START in text and END in text:
        before, rest = text.split(START, 1)
        text = before + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    return write_text_atomically(card, text)
