"""The end-of-run summary printed in the terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

METRIC_ROWS = ("accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro", "loss")


def print_summary(config, data, train_metrics: dict, results: dict, best_checkpoint: str | None,
                  parameters: tuple[int, int], console: Console | None = None, strategy: str | None = None) -> None:
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
        f"labels ({len(data.label_names)}): {', '.join(data.label_names[:20])}" + (" …" if len(data.label_names) > 20 else ""),
        "examples: " + ", ".join(f"{split} {len(ds)}" for split, ds in data.splits.items()),
        f"strategy: {strategy or config.transfer.strategy} · trainable {trainable:,} of {total:,} parameters",
        f"training: {train_metrics.get('train_runtime', 0):.1f} s, "
        f"{train_metrics.get('train_samples_per_second', 0):.1f} samples/s, "
        f"final train loss {train_metrics.get('train_loss', float('nan')):.4f}",
        f"best checkpoint: {best_checkpoint or '(last)'} by {config.training.metric_for_best_model}",
        *data.notes,
        f"saved to: {config.training.output_dir}",
    ]
    for line in lines:
        console.print(line, highlight=False)
