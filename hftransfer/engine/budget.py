"""``time_budget``: fit a run into a wall-clock budget (``--time_budget 10m``, ``90s``, ``1h30m``).

The budget counts from the start of the run to its saved model and card. After the first optimizer steps the
callback measures the seconds per step, sets the number of steps that fit (the learning-rate schedule is
stretched or shrunk to end there, so warmup and decay still run their course) and keeps back a reserve for
what comes after training: the final evaluation, calibration and saving. If the run falls behind anyway, it
stops at the step that would overrun, after an evaluation and a checkpoint, so the best checkpoint is still
restored and written with its evaluation and card.
"""

from __future__ import annotations

import logging
import math
import time

import torch
from transformers import TrainerCallback, get_scheduler

logger = logging.getLogger("hftransfer")

MEASURE_STEPS = 5  # steps timed before planning (the first one, with its warm-up, is not counted)
EVAL_SPEEDUP = 3.0  # an evaluation example costs about a third of a training one (no backward pass)
SAVE_SECONDS = 15.0  # writing the model, report, plots and card


class TimeBudget(TrainerCallback):
    """Plans the number of steps that fit the budget, and stops training when time runs out."""

    def __init__(
        self, budget_s: float, started: float, eval_examples: int, per_device_batch: int, evaluations: int | None = None
    ):
        """``evaluations``: for a stream (no epochs), how many evaluations to spread over the steps that fit."""
        self.budget_s, self.deadline = budget_s, started + budget_s
        self.evaluations = evaluations
        self.eval_examples, self.batch = eval_examples, per_device_batch
        self.first_step_end = None
        self.stop_at: int | None = None
        self.planned = 0
        self.summary = ""

    def reserve(self, step_s: float) -> float:
        """Seconds kept for after training: evaluating validation and test (twice with calibration) and saving."""
        example_s = step_s / max(self.batch, 1)
        return 2 * self.eval_examples * example_s / EVAL_SPEEDUP + SAVE_SECONDS

    def on_train_begin(self, args, state, control, **kwargs):
        self.planned = state.max_steps

    def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
        now = time.monotonic()
        if state.global_step == 1:
            self.first_step_end = now
        elif state.global_step == 1 + MEASURE_STEPS and self.first_step_end is not None:
            self._plan(args, state, lr_scheduler, (now - self.first_step_end) / MEASURE_STEPS, now)
        out_of_time = self.stop_at is not None and state.global_step >= self.stop_at
        if out_of_time or (self.first_step_end is not None and now > self.deadline - self._reserve_now(state, now)):
            if not control.should_training_stop:
                self.summary = self.summary or f"stopped at step {state.global_step} of {self.planned} planned"
            control.should_training_stop = True
            control.should_evaluate = control.should_save = args.eval_strategy != "no"
        return control

    def _reserve_now(self, state, now: float) -> float:
        step_s = (now - self.first_step_end) / max(state.global_step - 1, 1)
        return self.reserve(step_s)

    def _plan(self, args, state, lr_scheduler, step_s: float, now: float) -> None:
        """Steps that fit: the time left, less the reserve and the evaluations still to come, over seconds per step."""
        steps_per_epoch = max(math.ceil(state.max_steps / max(args.num_train_epochs, 1e-9)), 1)
        eval_s = self.eval_examples / 2 * step_s / max(self.batch, 1) / EVAL_SPEEDUP  # one validation pass
        left = self.deadline - now - self.reserve(step_s)
        if self.evaluations:
            fit = state.global_step + int(max(left - self.evaluations * eval_s, 0) / step_s)
        else:
            fit = state.global_step + int(left / (step_s + eval_s / steps_per_epoch))
        if fit >= state.max_steps:
            self.summary = f"{state.max_steps} steps fit the budget ({step_s:.2f} s per step)"
            return
        self.stop_at = max(fit, state.global_step + 1)
        if self.evaluations:  # the evaluations (and checkpoints) are spread over the steps that fit
            state.eval_steps = state.save_steps = max(1, math.ceil(self.stop_at / self.evaluations))
        self.summary = (
            f"{self.stop_at} of {state.max_steps} planned steps fit the budget ({step_s:.2f} s per "
            "step); the learning-rate schedule was fitted to them"
        )
        logger.info("time_budget: %s", self.summary)
        if lr_scheduler is not None and hasattr(lr_scheduler, "lr_lambdas"):
            stretch_schedule(lr_scheduler, args, self.stop_at)


def stretch_schedule(scheduler, args, total_steps: int) -> None:
    """Make a LambdaLR schedule (warmup, decay) end at ``total_steps`` instead, from where it is now."""
    groups = len(scheduler.lr_lambdas)
    stand_in = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)]} for _ in range(groups)], lr=1.0)
    replanned = get_scheduler(
        args.lr_scheduler_type,
        stand_in,
        num_warmup_steps=args.get_warmup_steps(total_steps),
        num_training_steps=total_steps,
        scheduler_specific_kwargs=args.lr_scheduler_kwargs,
    )
    scheduler.lr_lambdas = list(replanned.lr_lambdas)
