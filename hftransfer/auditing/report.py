"""The audit's outputs: ``audit_report.json`` (the contract below), the exclude list and the relabelling table.

``audit_report.json``::

    {"label_issues": [{"split", "id", "given", "suggested", "score"}],
     "duplicates": [{"a": {"split", "id"}, "b": {"split", "id"}, "similarity", "exact"}],
     "outliers": [{"split", "id", "score"}],
     "class_counts": {split: {label: n}}, ...}

Each list is best first (the likeliest label error, leaks before duplicates inside a split, the most distant
outlier). ``score`` is 1 - cleanlab's label quality for label issues and the mean distance to the nearest
neighbours for outliers; ``given``/``suggested`` are label lists for multi-label sets.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from hftransfer.files.atomic import write_text_atomically

REPORT_FILE, EXCLUDE_FILE, PAGE_FILE = "audit_report.json", "exclude.txt", "audit.html"
PRIVATE = "rows"  # the examples' positions in the pooled table, for the page only
INTERNAL = {"neighbours", "label_quality"}  # what the page needs and the report does not carry


def public(records: list[dict]) -> list[dict]:
    return [{key: value for key, value in record.items() if key != PRIVATE} for record in records]


def public_report(found: dict) -> dict:
    """The findings as ``audit_report.json`` holds them (no page-only keys)."""
    return {
        key: public(value) if isinstance(value, list) and key != "too_small_to_validate" else value
        for key, value in found.items()
        if key not in INTERNAL
    }


def write_report(report: dict, folder: Path) -> Path:
    return write_text_atomically(folder / REPORT_FILE, json.dumps(report, indent=2, ensure_ascii=False) + "\n")


def exclude_lines(report: dict) -> str:
    """An exclude list for ``train --exclude_file``: the training side of each leak and the second copy of each
    duplicate inside a split are listed; outliers and label issues are listed commented out, for a person to
    decide (uncomment the ones to drop)."""
    lines = [
        "# hftransfer audit: examples to leave out with `hftransfer train ... --exclude_file THIS_FILE`.",
        "# One split:id per line; lines starting with # are ignored. Review before training.",
        "",
        "# Leaks (a copy of a validation/test example in an earlier split) and exact duplicates:",
    ]
    dropped = []
    for record in report["duplicates"]:
        leak = record["a"]["split"] != record["b"]["split"]
        if record["exact"] or leak:  # a leak loses its earlier-split side (test stays as it is)
            side = record["a"] if leak else record["b"]
            dropped.append(f"{side['split']}:{side['id']}")
    lines += list(dict.fromkeys(dropped))  # an example in several pairs is listed once
    lines += ["", "# Outliers (uncomment to drop):"]
    lines += [f"# {r['split']}:{r['id']}" for r in report["outliers"]]
    lines += ["", "# Likely label errors (uncomment to drop; or relabel them from --fix_suggestions):"]
    lines += [f"# {r['split']}:{r['id']}" for r in report["label_issues"]]
    return "\n".join(lines) + "\n"


def suggestions_table(report: dict) -> str:
    """The suggested relabels as CSV (split, id, given, suggested, score), never applied by hftransfer."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["split", "id", "given", "suggested", "score"])
    for record in report["label_issues"]:
        given, suggested = (
            ";".join(value) if isinstance(value, list) else value for value in (record["given"], record["suggested"])
        )
        writer.writerow([record["split"], record["id"], given, suggested, record["score"]])
    return out.getvalue()
