"""``hftransfer rank RECIPE --models A B [--then_train]``: rank candidate backbones on the user's data."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hftransfer.cli.command_args import split_command_args
from hftransfer.cli.command_options import add_options, options_from
from hftransfer.config.commands import RankOptions
from hftransfer.files.output_policy import Input
from hftransfer.selection.rank import (
    RankError,
    candidate_config,
    candidate_name,
    check_report_dir,
    list_candidates,
    rank_candidates,
    sample_notes,
    save_rank_outputs,
)
from hftransfer.training.parse import parse_config
from hftransfer.training.recipe import run
from hftransfer.training.run_files import run_inputs

COLUMNS = (
    "#",
    "model",
    "LogME",
    "k-NN acc",
    "probe acc",
    "H-score",
    "params (M)",
    "features/s",
    "memory (MB)",
    "strategy",
)


def make_rank_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hftransfer rank",
        add_help=False,
        allow_abbrev=False,
        description=(
            "Rank candidate backbones on your data from frozen features (LogME, k-NN and linear-probe accuracy, "
            "H-score); every other option is one of `hftransfer train`'s (task, data, columns, seed …)."
        ),
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="candidates: Hub ids or folders (added to the recipe's model and its `candidates`)",
    )
    add_options(parser, RankOptions)
    parser.add_argument("--report_dir", default="hftransfer-rank", help="where rank_report.json and the plot go")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier ranking in report_dir")
    parser.add_argument(
        "--then_train",
        "--then-train",
        dest="then_train",
        action="store_true",
        help="fine-tune the best candidate (with strategy auto, which decides in the run, unless --strategy is given)",
    )
    return parser


def rank_command(argv: list[str]) -> int:
    parsed = split_command_args(make_rank_parser(), argv)
    if parsed is None:
        return 0
    a, remaining = parsed
    options_from(a, RankOptions)  # checked before any work
    base = parse_config(remaining)
    report_dir = Path(a.report_dir)
    candidates = [Input("--models", m) for m in a.models or [] if isinstance(m, str)]
    check_report_dir(report_dir, a.overwrite, run_inputs(base) + candidates)
    results, data, num_train = rank_candidates(base, a.models, a.sample_size, a.by)
    print_ranking(results, f"hftransfer rank · {base.model.task} · {sample_notes(data)} · by {a.by}")
    save_rank_outputs(
        results,
        report_dir,
        {
            "ranked_by": a.by,
            "task": base.model.task,
            "num_train": num_train,
            "sample": sample_notes(data),
            "labels": data.label_names,
        },
    )
    print(f"report: {report_dir / 'rank_report.json'}")
    if not a.then_train:
        return 0
    best = next((r for r in results if not r.error), None)
    if best is None:
        raise RankError("no candidate could be scored, so none can be trained")
    chosen = next(c for c in list_candidates(base, a.models) if candidate_name(c) == best.name)
    config = candidate_config(base, chosen)
    # the strategy is left to the run: auto measures the run's own data there and sets the options that go with
    # its choice (a contrastive phase, fine-tuning from a fresh head), which a strategy name alone would not carry
    config.notes.append(f"model: {best.name} (ranked first by hftransfer rank, by {a.by})")
    print(f"training {best.name} with strategy {config.transfer.strategy}")
    run(config)
    return 0


def print_ranking(results, title: str) -> None:
    table = Table(title=title)
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in ("model", "strategy") else "right")
    for i, r in enumerate(results):
        if r.error:
            table.add_row("-", _short_name(r.name), *["-"] * 7, f"skipped: {r.error[:80]}")
            continue
        s = r.scores
        table.add_row(
            str(i + 1),
            _short_name(r.name),
            f"{s['logme']:.4f}",
            f"{s['knn_accuracy']:.3f}",
            f"{s['linear_probe_accuracy']:.3f}",
            f"{s['h_score']:.3f}",
            f"{r.parameters / 1e6:.1f}",
            f"{r.features_per_second:.1f}",
            f"{r.peak_memory_mb:.0f}",
            r.recommended_strategy,
        )
    Console(width=max(Console().width, 140)).print(table)


def _short_name(name: str) -> str:
    """A Hub id as is; a local path by its last two parts (full paths are in the JSON report)."""
    path = Path(name.split(" (")[0])
    return name if not path.is_absolute() else "/".join(path.parts[-2:]) + name[len(str(path)) :]
