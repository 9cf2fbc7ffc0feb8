"""The ``hftransfer`` command: dispatch to one module per command; user errors end as one line and exit 2."""

from __future__ import annotations

import argparse
import logging
import sys

from hftransfer.cli.audit import audit_command
from hftransfer.cli.distill import distill_command
from hftransfer.cli.evaluate import eval_command
from hftransfer.cli.export import export_command
from hftransfer.cli.listing import accelerate_configs_command, recipes_command, strategies_command, tasks_command
from hftransfer.cli.predict import predict_command
from hftransfer.cli.push import push_command
from hftransfer.cli.rank import rank_command
from hftransfer.cli.train import train_command
from hftransfer.engine.progress import drop_misleading_warnings
from hftransfer.errors import run_reporting_user_errors

COMMANDS = {
    "train": (
        train_command,
        "fine-tune: hftransfer train RECIPE.yaml [--option value ...] or hftransfer train --model ...",
    ),
    "tasks": (tasks_command, "list the registered tasks"),
    "strategies": (strategies_command, "list the transfer strategies"),
    "accelerate-configs": (
        accelerate_configs_command,
        "list the accelerate config templates for train "
        "--accelerate_config (single_gpu, multi_gpu, fsdp, "
        "deepspeed_zero2, cpu)",
    ),
    "recipes": (recipes_command, "list the shipped recipes with their task and description"),
    "eval": (eval_command, "evaluate a trained model: hftransfer eval OUTPUT_DIR [--data PATH|HUB_ID] [--split test]"),
    "predict": (predict_command, 'classify inputs: hftransfer predict OUTPUT_DIR photo.jpg photos/ | "some text"'),
    "export": (export_command, "export to ONNX, checked against PyTorch: hftransfer export OUTPUT_DIR --format onnx"),
    "rank": (rank_command, "rank candidate backbones on your data: hftransfer rank RECIPE --models A B [--then_train]"),
    "audit": (
        audit_command,
        "find label errors, duplicates and leaks, outliers: hftransfer audit RECIPE [--report_dir DIR]",
    ),
    "distill": (
        distill_command,
        "train a smaller student on a run's soft targets: hftransfer distill OUTPUT_DIR [--student_layers N]",
    ),
    "push": (push_command, "upload a finished run to the Hub: hftransfer push OUTPUT_DIR --repo-id user/name"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="hftransfer", description="Transfer-learning fine-tuner for the HF stack.")
    parser.add_argument(
        "command", choices=sorted(COMMANDS), help="; ".join(f"{k}: {v[1]}" for k, v in COMMANDS.items())
    )
    if not argv or argv[0] in {"-h", "--help"}:
        parser.print_help()
        return 0
    if argv[0] not in COMMANDS:
        parser.error(f"unknown command {argv[0]!r}; valid commands: {', '.join(sorted(COMMANDS))}")
    function, _ = COMMANDS[argv[0]]
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("hftransfer").setLevel(logging.INFO)
    drop_misleading_warnings()
    return run_reporting_user_errors(function, argv[1:])
