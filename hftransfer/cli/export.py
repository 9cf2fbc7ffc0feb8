"""``hftransfer export OUTPUT_DIR --format onnx``: an export checked against PyTorch before it is kept."""

from __future__ import annotations

import argparse

from hftransfer.artifacts.export import export_run
from hftransfer.cli.command_options import add_options, options_from
from hftransfer.cli.evaluate import TRUST_HELP
from hftransfer.config.commands import ExportOptions


def export_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hftransfer export",
        description=(
            "Export a trained model (dynamic batch axis, and sequence length for text), checked against PyTorch."
        ),
    )
    parser.add_argument("model_dir")
    parser.add_argument("--output", default=None, help="default: MODEL_DIR/onnx")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier export's files in --output (other files there are kept)",
    )
    parser.add_argument("--trust_remote_code", action="store_true", help=TRUST_HELP)
    add_options(parser, ExportOptions)
    a = parser.parse_args(argv)
    options = options_from(a, ExportOptions)
    target = export_run(
        a.model_dir,
        options.format,
        a.output,
        options.atol,
        a.overwrite,
        a.trust_remote_code,
        options.quantize,
        options.max_accuracy_drop,
    )
    print(f"exported to {target}")
    return 0
