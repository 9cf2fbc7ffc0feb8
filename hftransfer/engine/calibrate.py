"""After training: temperature scaling fitted on the validation split and folded into the model
(``evaluation/calibration.py``). The evaluation that follows reports the scores before and after from one pass
(``evaluate_splits(..., temperature=T)``), and reuses the validation logits read here instead of predicting the
validation split a second time (SST-2, MiniLM, 400 examples: about 1 s saved; the first pass after training, ~2 s,
is the one calibration makes).

Skipped (and said) with ``calibrate: false``, for multi-label models (thresholds are tuned instead), without a
validation split, with fewer than ``MIN_EXAMPLES`` validation examples, when the head has no linear layer that
outputs the classes, or when the fitted T does not explain the validation labels significantly better than T = 1
(``SIGNIFICANT_CHI2``: the scores are then kept as trained).
"""

from __future__ import annotations

import logging

import numpy as np

from hftransfer.evaluation.calibration import (
    MIN_EXAMPLES,
    SIGNIFICANT_CHI2,
    classifier_layers,
    fit_temperature,
    fold_temperature,
    likelihood_ratio,
    negative_log_likelihood,
)

logger = logging.getLogger("hftransfer")


def calibrate(config, trainer, datasets: dict, data, plan) -> tuple[float | None, dict]:
    """Fit T on the validation logits and fold it into the model's classifier; returns T (None when skipped) and
    the logits read, ``{"validation": (logits before T, labels)}`` (empty when none were)."""
    if not config.transfer.calibrate or "validation" not in datasets:
        return None, {}
    if data.multi_label:  # one softmax temperature does not apply to independent sigmoids
        logger.info(
            "temperature scaling: not applied to a multi-label model; its decision thresholds are tuned on "
            "validation instead"
        )
        return None, {}
    layers = classifier_layers(trainer.model, plan.head_names, len(data.label_names))
    if len(datasets["validation"]) < MIN_EXAMPLES or not layers:
        reason = (
            f"{len(datasets['validation'])} validation examples (fewer than {MIN_EXAMPLES})"
            if layers
            else "the head has no linear layer with one output per class"
        )
        logger.warning("temperature scaling skipped: %s; scores are the model's raw softmax", reason)
        return None, {}
    logits, labels = full_logits(trainer, datasets["validation"])
    read = {"validation": (logits, labels)}
    temperature = fit_temperature(logits, labels)
    statistic = likelihood_ratio(logits, labels, temperature)
    if statistic < SIGNIFICANT_CHI2:
        note = (
            f"temperature scaling: not applied: T = {temperature:.3f} fits the {len(labels)} validation examples "
            f"no better than T = 1 beyond chance (likelihood ratio {statistic:.2f} < {SIGNIFICANT_CHI2}); "
            f"the scores are kept as trained"
        )
        logger.info(note)
        config.outcomes.append(note)
        return None, read
    fold_temperature(layers, temperature)
    trainer.model.config.hftransfer_calibration = {
        "temperature": temperature,
        "fitted_on": "validation",
        "examples": int(len(labels)),
    }
    logger.info(
        "temperature scaling: T = %.3f fitted on %d validation examples (NLL %.4f → %.4f)",
        temperature,
        len(labels),
        negative_log_likelihood(logits, labels),
        negative_log_likelihood(logits, labels, temperature),
    )
    return temperature, read


def full_logits(trainer, dataset) -> tuple[np.ndarray, np.ndarray]:
    """Every class's logit for each example (gathered across processes), not the top-k the metrics keep."""
    saved = trainer.compute_metrics, trainer.preprocess_logits_for_metrics
    trainer.compute_metrics = trainer.preprocess_logits_for_metrics = None
    try:
        output = trainer.predict(dataset, metric_key_prefix="calibration")
    finally:
        trainer.compute_metrics, trainer.preprocess_logits_for_metrics = saved
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    return np.asarray(logits, dtype=np.float32), np.asarray(output.label_ids).reshape(-1)
