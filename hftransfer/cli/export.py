"""``hftransfer export OUTPUT_DIR --format onnx``: an export checked against PyTorch before it is kept."""

from __future__ import annotations

import argparse

from hftransfer.artifacts.export import ATOL, FORMATS, export_run
from hftransfer.artifacts.quantize import MAX_ACCURACY_DROP, QUANTIZATIONS
from hftransfer.cli.evaluate import TRUST_HELP


def export_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hftransfer export",
        description=(
            "Export a trained model (dynamic batch axis, and sequence length for text), checked against PyTorch."
        ),
    )
    parser.add_argument("model_dir")
    parser.add_argument("--format", default="onnx", choices=FORMATS)
    parser.add_argument("--output", default=None, help="default: MODEL_DIR/onnx")
    parser.add_argument("--atol", type=float, default=ATOL, help="largest accepted |logit difference|")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier export's files in --output (other files there are kept)",
    )
    parser.add_argument("--trust_remote_code", action="store_true", help=TRUST_HELP)
    parser.add_argument(
        "--quantize",
        default=None,
        choices=QUANTIZATIONS,
        help="also write model_int8.onnx (the CPU's: dynamic int8 for text, static int8 calibrated on training "
        "examples for images) or model_fp16.onnx (for GPUs), kept only within --max_accuracy_drop of PyTorch on the "
        "run's validation (and test) split",
    )
    parser.add_argument(
        "--max_accuracy_drop",
        type=float,
        default=MAX_ACCURACY_DROP,
        help="largest accepted drop of the quantized model's accuracy (micro-F1 for multi-label), as a fraction",
    )
    a = parser.parse_args(argv)
    target = export_run(
        a.model_dir, a.format, a.output, a.atol, a.overwrite, a.trust_remote_code, a.quantize, a.max_accuracy_drop
    )
    print(f"exported to {target}")
    return 0
