"""``audit --run RUN``: a finished run's own predictions as a second signal on the examples it never trained on.

The run's probabilities on its training examples are memorised (a fine-tuned model fits wrong labels too), so only
its validation and test examples use them; there they are averaged with the frozen features' out-of-fold
probabilities. The audit reads the run's data as the run read it (its saved config, the same seed), so the split
each example was in is the run's.
"""

from __future__ import annotations

import numpy as np

from hftransfer.artifacts.predict import TorchBackend, sigmoid, softmax
from hftransfer.artifacts.run_dir import FinishedRun, open_run
from hftransfer.config.recipes import CONFIG_FILE
from hftransfer.errors import HftransferError

BATCH = 32


class AuditRunError(HftransferError):
    """A finished run that cannot serve the audit: not an hftransfer run, data in memory, other labels."""


def open_audited_run(path: str) -> FinishedRun:
    run = open_run(path)
    if run.config is None:
        raise AuditRunError(f"{path!r} has no {CONFIG_FILE}: --run takes a folder hftransfer train wrote")
    if run.trained_in_memory:
        raise AuditRunError(f"{path!r} was trained on data given in memory; its saved config cannot name the data")
    return run


def run_config_argv(run: FinishedRun) -> list[str]:
    """The flags that read the run's own config (the user's flags after them still win)."""
    return ["--config", str(run.path / CONFIG_FILE)]


def run_probabilities(run: FinishedRun, shown: list, label_names: list[str]) -> np.ndarray:
    """The run's class probabilities (multi-label: per label) for every example, columns in ``label_names`` order."""
    if run.label_names != list(label_names):
        raise AuditRunError(
            f"the run's labels ({', '.join(run.label_names[:8])}) differ from the data's ({', '.join(label_names[:8])})"
        )
    if any(isinstance(value, str) and " ‖ " in value for value in shown[:1]) and run.task.pixel_key is None:
        raise AuditRunError("--run reads single texts; the data holds text pairs")
    encode = run.task.prediction_encoder(run.load_processor())
    backend = TorchBackend(run.load_model())
    found = []
    for start in range(0, len(shown), BATCH):
        logits = backend.logits(encode(shown[start : start + BATCH]))
        found.append(sigmoid(logits) if run.multi_label else softmax(logits))
    return np.concatenate(found)
