"""``hftransfer eval OUTPUT_DIR [--data PATH|HUB_ID] [--split test]``: evaluate a trained model."""

from __future__ import annotations

import argparse

from hftransfer.artifacts.evaluate import evaluate_run
from hftransfer.artifacts.run_dir import ONNX_VARIANTS
from hftransfer.cli.command_options import add_options, options_from
from hftransfer.config.commands import EvalOptions
from hftransfer.evaluation.console import print_eval_report

TRUST_HELP = "run Python code the model folder ships (config.json auto_map); off by default, only for folders you trust"


def eval_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hftransfer eval",
        description=(
            "Evaluate a trained model on a labelled split: metrics, per-class scores, confusion matrix, worst "
            "errors, calibration. Writes eval_report.json and a confusion-matrix PNG."
        ),
    )
    parser.add_argument("model_dir", help="output_dir of hftransfer train")
    parser.add_argument(
        "--data",
        default=None,
        help="image folder, CSV/TSV/JSON/Parquet file or Hub dataset id; default: the run's own data",
    )
    parser.add_argument("--split", default=None, help="train, validation or test (default: test, else validation)")
    parser.add_argument("--output_dir", default=None, help="default: MODEL_DIR/eval/<data>-<split>")
    parser.add_argument("--label_column", default=None)
    parser.add_argument("--text_column", default=None)
    parser.add_argument("--text_pair_column", default=None)
    parser.add_argument("--image_column", default=None)
    add_options(parser, EvalOptions)
    parser.add_argument(
        "--onnx",
        nargs="?",
        const="fp32",
        default=False,
        choices=list(ONNX_VARIANTS),
        help="score the ONNX export on ONNX Runtime (MODEL_DIR/onnx/model.onnx), or with int8 / fp16 its quantized "
        "model",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier report in output_dir")
    parser.add_argument("--trust_remote_code", action="store_true", help=TRUST_HELP)
    a = parser.parse_args(argv)
    options_from(a, EvalOptions)  # checked before any work
    columns = {k: getattr(a, k) for k in ("label_column", "text_column", "text_pair_column", "image_column")}
    report, folder = evaluate_run(
        a.model_dir,
        a.data,
        a.split,
        a.output_dir,
        columns,
        a.batch_size,
        a.max_samples,
        a.overwrite,
        a.trust_remote_code,
        a.onnx,
    )
    print_eval_report(
        report,
        f"{a.model_dir} · {report['source']['data']} · {report['source']['split']} ({report['num_examples']} examples)",
        split=report["source"]["split"],
    )
    print(f"report: {folder}")
    return 0
