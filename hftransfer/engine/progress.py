"""A log a person can read: one progress bar per phase in a terminal, none in a file or a pipe, and one compact line
per evaluation in both.

transformers prints every log entry as a raw dict (``{'loss': '0.69', 'grad_norm': ...}``), through its progress
bar in a terminal and through ``PrinterCallback`` otherwise, and its bars and datasets' write carriage-return
fragments into a file. The Trainers here keep the bars where a terminal shows them, print neither dicts nor
fragments, and say after each evaluation where the run stands: epoch, step, the training loss, the evaluation
loss and the selection metric with its best so far.
"""

from __future__ import annotations

import logging
import sys

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback


def output_is_piped() -> bool:
    """stderr is a file or a pipe (not a terminal, nor a notebook, which renders progress bars itself)."""
    return not sys.stderr.isatty() and "ipykernel" not in sys.modules


# transformers warnings that are false on every hftransfer run: the image processor of a model that has no torchvision
# variant (EfficientNet, timm wrappers) "falls back" although torchvision is installed, and checkpoints saved less
# than a second apart (small epochs) make its checkpoint sorter doubt the file system's clock.
MISLEADING_WARNINGS = {
    "transformers.models.auto.image_processing_auto": "Requested torchvision backend is not available",
    "transformers.trainer_utils": "mtime may not be reliable",
}


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def drop_misleading_warnings() -> None:
    """``MISLEADING_WARNINGS`` filtered out of transformers' loggers (once, whoever calls)."""
    for name, text in MISLEADING_WARNINGS.items():
        library_logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) and f.text == text for f in library_logger.filters):
            library_logger.addFilter(_DropMessage(text))


def quiet_library_progress_bars() -> None:
    """transformers' (loading weights, writing shards) and datasets' (map, filter) bars off, where output is piped;
    transformers' misleading warnings dropped."""
    import datasets
    from transformers.utils import logging as transformers_logging

    drop_misleading_warnings()
    if output_is_piped():
        datasets.disable_progress_bars()
        transformers_logging.disable_progress_bar()


class BarsWithoutDicts(ProgressCallback):
    """transformers' progress bars, without the raw dict it writes under them at every log."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        return control


class EvaluationLines(TrainerCallback):
    """One line per evaluation on the main process, e.g. ``epoch 2/5 · step 56/140 · train loss 0.412 · eval loss
    0.389 · f1_macro 0.912 (best 0.921)``."""

    def __init__(self):
        self.train_loss = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.train_loss = logs["loss"]
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not state.is_world_process_zero or not metrics:
            return control
        parts = [
            f"epoch {state.epoch or 0:.3g}/{args.num_train_epochs:g}" if args.max_steps <= 0 else None,
            f"step {state.global_step}/{state.max_steps}",
            None if self.train_loss is None else f"train loss {float(self.train_loss):.4g}",
            None if "eval_loss" not in metrics else f"eval loss {metrics['eval_loss']:.4g}",
        ]
        metric = args.metric_for_best_model
        value = metrics.get(f"eval_{metric}") if metric else None
        if value is not None:
            best = value if state.best_metric is None else state.best_metric
            if state.best_metric is not None and args.greater_is_better is not None:
                best = max(best, value) if args.greater_is_better else min(best, value)
            parts.append(f"{metric} {value:.4g} (best {best:.4g})")
        _write(" · ".join(p for p in parts if p))
        return control


def _write(line: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stderr)  # above an active bar, not through it


def readable_callbacks(trainer) -> None:
    """Swap transformers' printing callbacks for the ones above on ``trainer``."""
    trainer.remove_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(BarsWithoutDicts())
    trainer.add_callback(EvaluationLines())
