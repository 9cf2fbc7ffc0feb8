"""``hftransfer audit RECIPE|--options [--report_dir DIR]``: label errors, duplicates and leaks, outliers, balance."""

from __future__ import annotations

import argparse

from hftransfer.auditing.finished_run import AuditRunError, open_audited_run, run_config_argv
from hftransfer.auditing.run import Audit, run_audit
from hftransfer.cli.command_args import split_command_args
from hftransfer.training.parse import parse_config


def make_audit_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hftransfer audit",
        add_help=False,
        allow_abbrev=False,
        description=(
            "Audit labelled data with a frozen backbone: likely label errors (cleanlab on out-of-fold "
            "probabilities), exact and near duplicates and train/validation/test leaks, outliers and class "
            "balance. Writes audit_report.json, audit.html and exclude.txt (for train --exclude_file). Every "
            "other option is one of `hftransfer train`'s (task, model, data, columns, seed …)."
        ),
    )
    parser.add_argument("--report_dir", default="hftransfer-audit", help="where the report, page and list go")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier audit in report_dir")
    parser.add_argument(
        "--fix_suggestions",
        default=None,
        help="also write the suggested relabels to this CSV (split, id, given, suggested, score) for review; "
        "nothing is relabelled",
    )
    parser.add_argument(
        "--run",
        default=None,
        help="a finished run (hftransfer train's output_dir): its data and backbone are the audit's (your flags "
        "still win), and its predictions join the evidence on the examples it did not train on",
    )
    return parser


def audit_command(argv: list[str]) -> int:
    parsed = split_command_args(make_audit_parser(), argv)
    if parsed is None:
        return 0
    a, remaining = parsed
    finished = open_audited_run(a.run) if a.run else None
    if finished is not None:
        if "--config" in remaining:
            raise AuditRunError("--run reads the run's own recipe; give either a recipe or --run")
        remaining = [*run_config_argv(finished), *remaining]
    result = run_audit(parse_config(remaining), a.report_dir, a.overwrite, a.fix_suggestions, finished)
    print(summary_lines(result))
    return 0


def summary_lines(result: Audit) -> str:
    found = result.report
    leaks = [r for r in found["duplicates"] if r["a"]["split"] != r["b"]["split"]]
    lines = [
        f"hftransfer audit · {found['meta']['examples']} examples · {found['meta']['seconds']} s",
        f"  leaks across splits: {len(leaks)} ({sum(r['exact'] for r in leaks)} exact)",
        f"  duplicates inside a split: {len(found['duplicates']) - len(leaks)}",
        f"  likely label errors: {len(found['label_issues'])}",
        f"  outliers: {len(found['outliers'])}",
        f"  imbalance ratio (train): {found['imbalance_ratio'] or 'n/a'}",
        f"  classes too small to validate: {', '.join(found['too_small_to_validate']) or 'none'}",
    ]
    lines += [f"  {path}" for path in result.written]
    return "\n".join(lines)
