"""The end-of-run summary printed in the terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from hftransfer.data.balance import balance_line
from hftransfer.data.streaming import is_streamed

METRIC_ROWS = (
    "accuracy",
    "f1_micro",
    "map",
    "f1_macro",
    "f1_weighted",
    "f1_samples",
    "precision_macro",
    "recall_macro",
    "worst_class_recall",
    "f1_macro_before_adjustment",
    "subset_accuracy",
    "hamming_loss",
    "loss",
)  # each shown when the run has it


def print_summary(
    config,
    data,
    train_metrics: dict,
    results: dict,
    best_checkpoint: str | None,
    parameters: tuple[int, int],
    console: Console | None = None,
    strategy: str | None = None,
) -> None:
    """One table of the final metrics per split, then where everything was written."""
    console = console or Console()
    prefixes = [p for p in ("eval", "test") if any(k.startswith(f"{p}_") for k in results)]
    backbone = config.model.model or config.model.timm_arch
    table = Table(title=f"hftransfer · {config.model.task} · {backbone}", show_lines=False)
    table.add_column("metric")
    for prefix in prefixes:
        table.add_column("validation" if prefix == "eval" else "test", justify="right")
    for name in METRIC_ROWS:
        if any(f"{p}_{name}" in results for p in prefixes):
            table.add_row(name, *(f"{results.get(f'{p}_{name}', float('nan')):.4f}" for p in prefixes))
    console.print(table)
    trainable, total = parameters
    lines = [
        f"labels ({len(data.label_names)}): {', '.join(data.label_names[:20])}"
        + (" …" if len(data.label_names) > 20 else ""),
        "examples: "
        + ", ".join(f"{split} {'streamed' if is_streamed(ds) else len(ds)}" for split, ds in data.splits.items()),
        f"strategy: {strategy or config.transfer.strategy} · trainable {trainable:,} of {total:,} parameters",
        f"training: {train_metrics.get('train_runtime', 0):.1f} s, "
        f"{train_metrics.get('train_samples_per_second', 0):.1f} samples/s, "
        f"final train loss {train_metrics.get('train_loss', float('nan')):.4f}",
        f"best checkpoint: {best_checkpoint or '(last)'} by {config.training.metric_for_best_model}",
        *([balance] if (balance := balance_line(data)) else []),
        *data.notes,
        *config.all_notes(),
        f"saved to: {config.training.output_dir}",
    ]
    for line in lines:
        console.print(line, highlight=False)


def _clip(text, limit: int = 60) -> str:
    text = str(text)
    return text if len(text) <= limit else "…" + text[-(limit - 1) :] if "/" in text else text[: limit - 1] + "…"


def print_eval_details(reports: dict, console: Console | None = None, errors_shown: int = 3) -> None:
    """After the summary: top-k accuracy and calibration, the most confused pairs, the worst errors."""
    console = console or Console()
    for split, report in reports.items():
        summary = report["summary"]
        extras = [
            f"{name} {summary[key]:.4f}"
            for key, name in (
                ("top_5_accuracy", "top-5 accuracy"),
                ("expected_calibration_error", "ECE"),
                ("expected_calibration_error_before", "ECE before temperature scaling"),
            )
            if summary.get(key) is not None
        ]
        if "temperature" in report:
            extras.append(f"temperature {report['temperature']:.3f}")
        if extras:
            console.print(f"{split}: " + ", ".join(extras), highlight=False)
        if report.get("multi_label"):
            print_multilabel_errors(split, report, console, errors_shown)
            continue
        if report.get("weakest_classes"):
            weakest = ", ".join(f"{c['class']} {c['recall']:.2f} of {c['support']}" for c in report["weakest_classes"])
            console.print(f"{split} weakest classes (recall): {weakest}", highlight=False)
        if report["most_confused"]:
            pairs = "; ".join(f"{p['true']} → {p['predicted']} {p['count']}" for p in report["most_confused"][:3])
            console.print(f"{split} most confused (true → predicted): {pairs}", highlight=False)
        for error in report["worst_errors"][:errors_shown]:
            confidence = f"{error['confidence']:.2f}" if error["confidence"] is not None else "?"
            console.print(
                f"  wrong at {confidence}: {_clip(error['example'])} (true {error['true']}, "
                f"predicted {error['predicted']})",
                highlight=False,
            )


def print_eval_report(
    report: dict, title: str, console: Console | None = None, classes_shown: int = 20, split: str = "data"
) -> None:
    """``hftransfer eval``'s terminal view: metrics, per-class scores (the weakest first when many), errors."""
    console = console or Console()
    metrics = Table(title=title)
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for key, value in report["summary"].items():
        metrics.add_row(key, f"{value:.4f}")
    console.print(metrics)
    scores_by_class = report.get("per_class") or report.get("per_label") or {}
    per_class = sorted(scores_by_class.items(), key=lambda item: item[1]["f1-score"])
    if len(per_class) <= classes_shown:
        per_class = list(scores_by_class.items())
    table = Table(
        title="per class" + (f" (the {classes_shown} weakest by F1)" if len(scores_by_class) > classes_shown else "")
    )
    for column in ("class", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, scores in per_class[:classes_shown]:
        table.add_row(
            name,
            f"{scores['precision']:.3f}",
            f"{scores['recall']:.3f}",
            f"{scores['f1-score']:.3f}",
            str(int(scores["support"])),
        )
    console.print(table)
    print_eval_details({split: report}, console, errors_shown=5)


def print_multilabel_errors(split: str, report: dict, console: Console, errors_shown: int) -> None:
    """How the thresholds were set, then the worst misses and spurious labels."""
    console.print(f"{split} thresholds: {report.get('thresholds', '0.5')}", highlight=False)
    for error in report["worst_errors"][:errors_shown]:
        console.print(
            f"  {_clip(error['example'])}: true {error['true']}, missed {error['missed']}, spurious "
            f"{error['spurious']}",
            highlight=False,
        )
