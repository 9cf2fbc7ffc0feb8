"""``hftransfer predict OUTPUT_DIR inputs…``: top-k labels for images or texts, printed or written to a file."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from hftransfer.artifacts.predict import check_output_path, predict_inputs, write_predictions
from hftransfer.artifacts.run_dir import ONNX_VARIANTS
from hftransfer.cli.command_options import add_options, options_from
from hftransfer.cli.evaluate import TRUST_HELP
from hftransfer.config.commands import PredictOptions


class OnnxVariant(argparse.Action):
    """``--onnx`` alone (fp32), ``--onnx int8``; a value that is no variant is the first input (``--onnx bee.jpg``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if values in ONNX_VARIANTS:  # --onnx alone passes const, fp32
            setattr(namespace, self.dest, values)
            return
        setattr(namespace, self.dest, self.const)
        namespace.onnx_inputs = [*getattr(namespace, "onnx_inputs", []), values]


def predict_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hftransfer predict",
        description=("Top-k labels for images (files, folders, globs) or texts (arguments, --text_file, --csv)."),
    )
    parser.add_argument("model_dir", help="output_dir of hftransfer train, or its ONNX export folder")
    parser.add_argument("inputs", nargs="*", help="image files/folders/globs, or texts")
    parser.add_argument("--text_file", default=None, help="texts, one per line")
    parser.add_argument("--csv", default=None, help="a CSV/TSV file whose --column holds the texts")
    parser.add_argument("--column", default=None, help="the text column of --csv (default: text, sentence …)")
    add_options(parser, PredictOptions)
    parser.add_argument(
        "--onnx",
        nargs="?",
        const="fp32",
        default=False,
        action=OnnxVariant,
        help="run the ONNX export on ONNX Runtime: MODEL_DIR/onnx/model.onnx, or with int8 / fp16 its model_int8.onnx "
        "/ model_fp16.onnx",
    )
    parser.add_argument("--output", default=None, help="write predictions to a .csv, .json or .jsonl file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    parser.add_argument("--trust_remote_code", action="store_true", help=TRUST_HELP)
    a = parser.parse_intermixed_args(argv)  # inputs may come before or after the options
    a.inputs = [*getattr(a, "onnx_inputs", []), *a.inputs]
    options_from(a, PredictOptions)  # checked before any work
    reads = {"model_dir": a.model_dir, "--text_file": a.text_file, "--csv": a.csv}
    reads.update({f"input {item!r}": item for item in a.inputs})
    output = check_output_path(a.output, a.overwrite, reads)  # before any work
    predictions = predict_inputs(
        a.model_dir,
        a.inputs,
        {"text_file": a.text_file, "csv": a.csv, "column": a.column},
        a.top_k,
        a.batch_size,
        a.onnx,
        a.trust_remote_code,
    )
    if output:
        write_predictions(predictions, output)
        print(f"{len(predictions)} predictions written to {output}")
        return 0
    table = Table()
    table.add_column("input")
    for i in range(1, max((len(p.labels) for p in predictions), default=0) + 1):
        table.add_column(f"#{i}")
    for p in predictions:
        table.add_row(
            p.input if len(p.input) <= 70 else "…" + p.input[-69:],
            *[f"{label} {score:.3f}" for label, score in zip(p.labels, p.scores)],
        )
    Console().print(table)
    return 0
