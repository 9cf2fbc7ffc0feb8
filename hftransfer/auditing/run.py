"""``hftransfer audit``: read the data as ``train`` would, embed every example once with the frozen backbone, then
find likely label errors, duplicates and leaks, outliers and class imbalance, and write the report and the page."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from hftransfer.auditing import balance, duplicates, label_issues, outliers, page, report
from hftransfer.auditing.examples import PooledExamples, pool
from hftransfer.auditing.features import audit_features
from hftransfer.auditing.finished_run import run_probabilities
from hftransfer.auditing.neighbours import nearest
from hftransfer.backbones.checkpoints import load_model_config
from hftransfer.data.fingerprints import NEAR_RULES, NearRule
from hftransfer.data.labels import LABELS, column_values
from hftransfer.data.source_ids import id_of, split_of
from hftransfer.errors import HftransferError
from hftransfer.files.atomic import write_text_atomically
from hftransfer.files.output_policy import Input, Output, check_output
from hftransfer.files.readers import refusing_code_in_pickles
from hftransfer.files.written import record_entries
from hftransfer.tasks import get_task
from hftransfer.training.run_files import run_inputs

logger = logging.getLogger("hftransfer")

NEIGHBOURS = 10  # the outlier score averages them, near duplicates are sought among them, the page shows 4


class AuditError(HftransferError):
    """An audit that cannot start: the report folder holds one, or the data cannot be audited."""


@dataclass
class Audit:
    report: dict  # what audit_report.json holds
    folder: Path
    written: list[Path]


AUDIT_FILES = (report.REPORT_FILE, report.EXCLUDE_FILE, report.PAGE_FILE)


def check_audit_outputs(folder: Path, overwrite: bool, fix_suggestions: str | None, inputs: list[Input]) -> None:
    """Both outputs checked by the output policy before any work: the report folder, and the suggestions file (not a
    folder, not one of the report's own files, not replaced without --overwrite)."""
    check_output(Output("--report_dir", folder, writes=AUDIT_FILES), inputs)
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise AuditError(f"{str(folder)!r} is not empty; pass --overwrite or choose another --report_dir")
    if not fix_suggestions:
        return
    target = check_output(Output("--fix_suggestions", fix_suggestions, folder=False), inputs)
    if target.resolve().parent == folder.resolve() and target.name in AUDIT_FILES:
        raise AuditError(f"--fix_suggestions {fix_suggestions!r} is the audit's own {target.name}; name another file")
    if target.exists() and not overwrite:
        raise AuditError(f"{fix_suggestions!r} exists; pass --overwrite or name another file")


MIN_EXAMPLES = 10  # out-of-fold probabilities need at least two folds of a few examples


def check_enough(data) -> None:
    """Enough examples, and a class with two, to fit on some and score the others; checked before the backbone runs."""
    labels = np.asarray([value for ds in data.splits.values() for value in column_values(ds, LABELS)])
    largest = int(labels.sum(0).max() if data.multi_label else np.bincount(labels.astype(int)).max())
    if len(labels) < MIN_EXAMPLES or largest < 2:
        raise AuditError(
            f"{len(labels)} examples (the largest class {largest}) are too few to audit: out-of-fold predictions "
            f"need at least {MIN_EXAMPLES} examples and a class with 2"
        )


def run_audit(
    config, report_dir: str | Path, overwrite: bool = False, fix_suggestions: str | None = None, finished=None
) -> Audit:
    """Audit the data ``config`` names with its backbone; the report lands in ``report_dir``. ``finished``: a
    finished run (``audit --run``) whose predictions join on the examples it did not train on."""
    folder = Path(report_dir).expanduser()
    inputs = run_inputs(config) + ([Input("--run", finished.path, outputs_inside=True)] if finished else [])
    check_audit_outputs(folder, overwrite, fix_suggestions, inputs)
    started = time.perf_counter()
    task = get_task(config.model.task)
    data = task.load_data(config)
    if data.streamed:
        raise AuditError("a streamed training split is read once per pass; audit it without streaming: true")
    check_enough(data)
    model_config = (task.load_model_config or load_model_config)(config)
    processor = task.build_preprocessing(config, data, model_config)
    with refusing_code_in_pickles(config.model.model or config.model.weights):
        model = task.build_model(config, data, model_config)
    features = np.concatenate(list(audit_features(model, config, task, processor, data, model_config).values()))
    del model  # the backbone's work is done; a finished run's model may load next
    examples = pool(data)
    validation = column_values(data.splits["validation"], LABELS)
    from_run = None if finished is None else run_probabilities(finished, examples.shown, data.label_names)
    held_out = np.concatenate([np.full(len(ds), split != "train") for split, ds in data.splits.items()])
    found = find_everything(
        examples, features, data.label_names, data.multi_label, config.training.seed, validation, (from_run, held_out)
    )
    found["meta"] = {
        "date": date.today().isoformat(),
        "task": config.model.task,
        "backbone": config.model.model or config.model.timm_arch,
        "run": None if finished is None else str(finished.path),
        "examples": len(examples.sources),
        "seconds": round(time.perf_counter() - started, 1),
        "data_notes": list(data.notes),
    }
    folder.mkdir(parents=True, exist_ok=True)
    shown = report.public_report(found)
    record_entries(folder, *AUDIT_FILES)  # named before they are written, as every command's outputs are
    written = [
        report.write_report(shown, folder),
        write_text_atomically(folder / report.EXCLUDE_FILE, report.exclude_lines(found)),
        write_text_atomically(folder / report.PAGE_FILE, page.render(found, examples)),
    ]
    if fix_suggestions:
        suggestions = Path(fix_suggestions).expanduser()
        suggestions.parent.mkdir(parents=True, exist_ok=True)
        written.append(write_text_atomically(suggestions, report.suggestions_table(found)))
    return Audit(shown, folder, written)


def find_everything(
    examples: PooledExamples,
    features: np.ndarray,
    names: list[str],
    multi_label: bool,
    seed: int,
    validation,
    run_signal: tuple = (None, None),
) -> dict:
    """The report's sections from the pooled examples and their features (``validation``: the label ids of the
    split that will pick the best checkpoint, carved as training carves it; ``run_signal``: a finished run's
    probabilities and the rows it did not train on)."""
    neighbours = nearest(features, NEIGHBOURS)
    if multi_label:
        scores = label_issues.score_multi_labels(features, np.stack(examples.labels), seed, *run_signal)
    else:
        scores = label_issues.score_labels(features, examples.labels.astype(int), len(names), seed, *run_signal)
    rule = NEAR_RULES[examples.modality]
    same_picture = duplicates.SamePicture(examples.shown) if examples.modality == "image" else None
    distance = outliers.outlier_scores(neighbours)
    far, fence = outliers.outlier_rows(distance)
    counts = balance.class_counts([split_of(s) for s in examples.sources], list(examples.labels), names, multi_label)
    validation_counts = balance.class_counts(["validation"] * len(validation), validation, names, multi_label)
    return {
        "label_issues": issue_records(examples, scores, names, multi_label),
        "duplicates": duplicates.duplicate_records(examples.sources, examples.keys, neighbours, rule, same_picture),
        "outliers": [_where(examples, row) | {"score": round(float(distance[row]), 4), "rows": (row,)} for row in far],
        "class_counts": counts,
        "imbalance_ratio": balance.imbalance_ratio(counts.get("train", {})),
        "too_small_to_validate": balance.too_small(validation_counts.get("validation", {})),
        "method": {
            "label_issues": "cleanlab confident learning on out-of-fold probabilities (auditing/label_issues.py)"
            + ("" if run_signal[0] is None else ", averaged with the run's own on its validation and test examples"),
            "near_duplicates": near_rule_words(rule, same_picture is not None),
            "outlier_fence": round(fence, 4),
            "folds": label_issues.FOLDS,
        },
        "neighbours": neighbours,
        "label_quality": scores.quality,  # every example's, for benchmarks/audit.py (the report lists the flagged)
    }


def near_rule_words(rule: NearRule, hashed: bool) -> str:
    words = f"cosine similarity of centred features at least {rule.certain}"
    if hashed:
        words += (
            f", or at least {rule.candidate} with perceptual hashes at most {duplicates.HASH_BITS_APART} bits apart"
        )
    return words


def issue_records(examples: PooledExamples, scores, names: list[str], multi_label: bool) -> list[dict]:
    rows = np.flatnonzero(scores.flagged)
    rows = rows[np.argsort(scores.quality[rows], kind="stable")]

    def named(value):
        return [names[i] for i in np.flatnonzero(np.asarray(value) > 0.5)] if multi_label else names[int(value)]

    return [
        _where(examples, row)
        | {
            "given": named(examples.labels[row]),
            "suggested": named(scores.suggested[row]),
            "score": round(1.0 - float(scores.quality[row]), 4),
            "rows": (int(row),),
        }
        for row in rows
    ]


def _where(examples: PooledExamples, row: int) -> dict:
    return {"split": split_of(examples.sources[row]), "id": id_of(examples.sources[row])}
