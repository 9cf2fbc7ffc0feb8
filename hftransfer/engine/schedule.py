"""The schedule the data calls for, applied where the user set nothing: each value comes with its reason.

- The new head's learning rate: a head starts from random weights while the body is pretrained; it trains at
  ``HEAD_LEARNING_RATE`` (Adam's usual step for a freshly initialised linear layer) or the body's rate if that
  is higher. With a body rate of 1e-4 (small text encoders) the head otherwise needs many epochs to catch up,
  the more so the more classes it has.
- A floor on a probe's optimiser steps: a head trained on frozen (cached) features costs next to nothing per
  step, but ten epochs of a small set are only a few dozen steps (ORL faces, 256 training images at batch 32:
  80), too few for Adam at 1e-3 to fit a head of many classes. A probe takes at least ``MIN_PROBE_STEPS``
  steps, in whole epochs; its best epoch is kept, so more epochs cannot make it worse on validation. (This holds
  where the head trains by steps: on cached features a linear head is fitted as a logistic regression instead,
  strategies/logistic_head.py.)
  Fine-tuning gets no such floor: its steps cost the backbone's forward and backward passes.
- ``lp_ft`` fine-tunes for one epoch less than the task's: its probe phase has already trained the head, the
  main work of full fine-tuning's first epoch from a random head (validation accuracy after one fine-tuning
  epoch, ``full`` / ``lp_ft``: TREC 0.577 / 0.870, GTSRB 0.41 / 0.565), and that epoch pays for the probe
  phase (a pass over the training set and the head's epochs on its features), so ``lp_ft`` costs no more than
  ``full``. ``benchmarks/defaults.py``, ``auto`` (lp_ft) with the task's epochs / one less, against ``full``:
  TREC 0.920 in 5:05 / 0.900 in 3:22, ``full`` 0.724 in 3:58-4:04; GTSRB 0.812 in 8:32 / 0.784 in 6:24, ``full``
  0.797 in 6:53-7:18 (the runs with the task's epochs measured with a slower version of auto's probe). The epoch
  costs about 2 points of accuracy on both; without it ``lp_ft`` takes 13-25% longer than ``full``.
- A horizon fitted to the data for fine-tuning: a fixed number of epochs gives a small set few optimiser steps
  (1,000 photos at batch 32: 29 steps an epoch after the carved validation, 145 in the image recipe's 5 epochs),
  and such runs end while the validation score is still climbing. A fine-tuning run (any strategy that trains
  the body) takes at least ``MIN_FINE_TUNING_STEPS`` optimiser steps, in whole epochs, at most
  ``MAX_HORIZON_FACTOR`` times the epochs it would have run (so a run costs at most that many times what the
  fixed recipe cost), with the learning-rate schedule spread over the whole horizon. Early stopping then ends a
  run whose validation ``metric_for_best_model`` has not improved for ``PATIENCE`` evaluations (the best
  checkpoint is kept either way), so a run that has converged stops early and one that has not goes on.
  Evidence: ``benchmarks/defaults.py`` (docs/training.md).
- A probe's best epoch on a tiny validation split (fewer than ``SMALL_VALIDATION`` examples) is picked by the
  validation loss: accuracy or F1 on 49 images moves in steps of 2 points and ties over most of a probe's many
  epochs, so the first of the tied epochs won (hymenoptera, 49 carved images: 0.935 test accuracy by macro-F1,
  0.954 by loss, the pinned 10-epoch probe's figure; ECE 0.039 -> 0.022).
"""

from __future__ import annotations

import math
from typing import Any

from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from hftransfer.data.labels import SMALL_VALIDATION

HEAD_LEARNING_RATE = 1e-3
MIN_PROBE_STEPS = 500
MAX_PROBE_EPOCHS = 100
MIN_FINE_TUNING_STEPS = 300
MAX_HORIZON_FACTOR = 3
PATIENCE = 3
STREAM_EVALUATIONS = 10
STREAM_BUDGET_STEPS = 1_000_000


def schedule_for(config, strategy, data) -> dict[str, tuple[Any, str]]:
    """``{option: (value, reason)}`` for the options this run's data and strategy call for."""
    args, transfer = config.training, config.transfer
    chosen: dict[str, tuple[Any, str]] = {}  # the strategy's own choices (its schedule hook) are added last
    if getattr(data, "multi_label", False) and args.metric_for_best_model == "f1_macro":
        chosen["metric_for_best_model"] = (
            "map",
            "multi-label: mean average precision ranks checkpoints without a "
            "decision threshold (thresholds are tuned after training)",
        )
    if transfer.head_learning_rate is None and not strategy.frozen_backbone and args.learning_rate < HEAD_LEARNING_RATE:
        chosen["head_learning_rate"] = (HEAD_LEARNING_RATE, "a new head trains faster than the pretrained body")
    validation = data.splits.get("validation")
    if (
        strategy.frozen_backbone
        and validation is not None
        and len(validation) < SMALL_VALIDATION
        and not {"metric_for_best_model", "greater_is_better"} & set(config.explicit)
    ):
        reason = f"{len(validation)} validation examples tie on accuracy over most epochs; the loss ranks them"
        chosen["metric_for_best_model"] = ("loss", reason)
        chosen["greater_is_better"] = (False, "a lower validation loss is better")
    if getattr(data, "streamed", False):
        chosen.update(stream_schedule(config))
    if strategy.schedule is not None:
        chosen.update(strategy.schedule(config, config.options_for(strategy), data))
    if strategy.frozen_backbone and args.max_steps <= 0:  # max_steps bounds the probe as well
        floor = probe_epochs_floor(len(data.splits["train"]), args)
        if floor > args.num_train_epochs:
            chosen["num_train_epochs"] = (floor, PROBE_FLOOR_REASON)
    elif not getattr(data, "streamed", False):
        chosen.update(fine_tuning_horizon(config, data, chosen))
    return chosen


def fine_tuning_horizon(config, data, chosen: dict) -> dict[str, tuple[Any, str]]:
    """The epochs (and early stopping) of a fine-tuning run whose user set neither epochs nor steps (see the
    module docstring); ``chosen``: what this schedule has chosen so far (``lp_ft``'s epochs)."""
    args = config.training
    if args.max_steps > 0 or {"num_train_epochs", "max_steps"} & set(config.explicit):
        return {}
    horizon: dict[str, tuple[Any, str]] = {}
    planned = chosen.get("num_train_epochs", (args.num_train_epochs, ""))[0]
    steps_per_epoch = steps_in_epoch(len(data.splits["train"]), args)
    floor = min(math.ceil(MIN_FINE_TUNING_STEPS / steps_per_epoch), MAX_HORIZON_FACTOR * math.ceil(planned))
    if floor > planned:
        horizon["num_train_epochs"] = (
            floor,
            f"{steps_per_epoch} optimiser steps an epoch: at least {MIN_FINE_TUNING_STEPS} steps for fine-tuning "
            f"on a small set (at most {MAX_HORIZON_FACTOR}x the {planned:g} epochs planned), early stopping ends it "
            "once it has converged",
        )
    evaluated = args.eval_strategy != IntervalStrategy.NO and args.load_best_model_at_end
    unset = config.transfer.early_stopping_patience is None and "early_stopping_patience" not in config.explicit
    if evaluated and unset and "validation" in data.splits:
        horizon["early_stopping_patience"] = (
            PATIENCE,
            f"stop when validation {args.metric_for_best_model} has not improved for {PATIENCE} evaluations (the "
            "best checkpoint is kept)",
        )
    return horizon


def steps_in_epoch(num_train: int, args) -> int:
    """Optimiser steps in one epoch of ``num_train`` examples."""
    batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1)
    return max(math.ceil(num_train / batch), 1)


PROBE_FLOOR_REASON = (
    f"at least {MIN_PROBE_STEPS} optimiser steps for the probe on a small set, where its head trains by steps (on "
    "cached features a linear head is fitted as a logistic regression instead)"
)


def probe_epochs_floor(num_train: int, args) -> int:
    """Whole epochs that give a probe at least ``MIN_PROBE_STEPS`` optimiser steps (at most ``MAX_PROBE_EPOCHS``)."""
    steps_per_epoch = steps_in_epoch(num_train, args)
    return min(math.ceil(MIN_PROBE_STEPS / steps_per_epoch), MAX_PROBE_EPOCHS)


def stream_schedule(config) -> dict[str, tuple[Any, str]]:
    """Streamed data has no epochs: the run is evaluated and checkpointed ``STREAM_EVALUATIONS`` times over its
    steps (for best-checkpoint selection and early stopping). Under ``time_budget`` alone, ``max_steps`` starts at
    ``STREAM_BUDGET_STEPS`` and the budget cuts it to the steps that fit once it has measured the first ones."""
    args = config.training
    chosen: dict[str, tuple[Any, str]] = {}
    steps = args.max_steps
    if steps <= 0:
        steps = STREAM_BUDGET_STEPS
        chosen["max_steps"] = (steps, "streamed data under time_budget: cut to the steps that fit after the first ones")
    if stream_evaluations(config):
        every = max(1, math.ceil(steps / STREAM_EVALUATIONS))
        reason = f"a stream has no epochs: {STREAM_EVALUATIONS} evaluations and checkpoints over the run"
        chosen["eval_strategy"] = (IntervalStrategy.STEPS, reason)
        chosen["save_strategy"] = (SaveStrategy.STEPS, reason)
        chosen["eval_steps"] = chosen["save_steps"] = (every, reason)
    return chosen


def stream_evaluations(config) -> int | None:
    """How many evaluations hftransfer spreads over a streamed run (``time_budget`` re-spreads them over the steps
    that fit): ``STREAM_EVALUATIONS``, or None when the user scheduled evaluations or checkpoints."""
    chosen = {"eval_strategy", "save_strategy", "eval_steps", "save_steps"} & set(config.explicit)
    return None if chosen else STREAM_EVALUATIONS
