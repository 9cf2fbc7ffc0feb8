"""Fitting with a linear probe: ``linear_probe`` (the head alone, on cached features when nothing is augmented)
and ``lp_ft`` (a probe, then full fine-tuning from the probed head; Kumar et al., ICLR 2022).

The probe runs in a sub-folder of output_dir that is removed afterwards; its best epoch (by the run's
``metric_for_best_model``) is what the head keeps. When fine-tuning never beats the probe on validation,
``lp_ft`` keeps the probed model. With ``fine_tune_from_probe: false`` fine-tuning starts from the fresh head, as
``full`` does, and the probe is only that fallback: the frozen-feature arm, never lost to a fine-tuning run that
does worse (auto's choice where the body fine-tunes at the head's rate, strategies/auto.py).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from hftransfer.backbones.blocks import head_parameter_names
from hftransfer.config.limits import NON_NEGATIVE, POSITIVE, check_fields, option
from hftransfer.engine.schedule import PROBE_FLOOR_REASON, probe_epochs_floor
from hftransfer.engine.trainer import ClassificationTrainer
from hftransfer.evaluation.report import reduce_logits
from hftransfer.strategies.base import FitContext, FitResult, StrategyError, fit_with_trainer, training_phase
from hftransfer.strategies.contrastive import train_body_on_pairs
from hftransfer.strategies.features import FeatureCacheUnavailable, HeadOnFeatures, feature_datasets, head_root
from hftransfer.strategies.logistic_head import LogisticFit, fit_logistic_head, single_linear

logger = logging.getLogger("hftransfer")

ONE_SIDED_95 = 1.645  # z of a one-sided test at the 5% level


@dataclass
class ProbeOptions:
    """The options of ``lp_ft``: its probe phase."""

    probe_epochs: float = field(
        default=10, metadata=option("lp_ft: epochs of the linear probe before full fine-tuning.", range=POSITIVE)
    )
    probe_learning_rate: float = field(
        default=1e-3, metadata=option("lp_ft: learning rate of the linear probe phase.", range=POSITIVE)
    )
    contrastive_epochs: float = field(
        default=0,
        metadata=option(
            "lp_ft: epochs of contrastive fine-tuning of the body on pairs of training examples (SetFit's idea) "
            "before the probe; 0: none (auto sets it for a sentence encoder with few examples per class).",
            range=NON_NEGATIVE,
        ),
    )
    contrastive_learning_rate: float | None = field(
        default=None,
        metadata=option("lp_ft: learning rate of the contrastive phase (default: learning_rate).", range=POSITIVE),
    )
    fine_tune_from_probe: bool = field(
        default=True,
        metadata={
            "help": "lp_ft: fine-tuning starts from the probed head (Kumar et al.); false: from the fresh head, as "
            "full does, the probe kept only when fine-tuning does not beat it on validation (auto's choice for a "
            "body that fine-tunes at the head's rate)."
        },
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class ProbeResult:
    metrics: dict
    log_history: list
    best: str | None = None  # where the kept head came from (the probe's checkpoints are removed)
    best_metric: float | None = None  # its metric_for_best_model
    global_step: int = 0
    epoch: float | None = None


def fit_linear_probe(ctx: FitContext) -> FitResult:
    """The head alone: on cached features when no augmentation is active, else through the frozen backbone."""
    args, transfer = ctx.config.training, ctx.config.transfer
    if transfer.cache_features and ctx.augmentation is None and not ctx.checkpoint:
        probe = train_probe(
            ctx,
            ctx.datasets,
            args.num_train_epochs,
            transfer.head_learning_rate or args.learning_rate,
            through_backbone_ok=False,
            by_steps=told_steps(ctx, "num_train_epochs", "learning_rate", "head_learning_rate"),
        )
        if probe is not None:
            state = ctx.trainer.state  # the run's state is the probe's: its steps, epochs and evaluations
            state.log_history, state.global_step, state.epoch = probe.log_history, probe.global_step, probe.epoch
            return FitResult(probe.metrics, probe.best)
    return fit_with_trainer(ctx)


def fit_probe_then_fine_tune(ctx: FitContext) -> FitResult:
    """lp_ft: the probe on un-augmented examples (as in Kumar et al.), then full fine-tuning from the probed head.

    A resumed run continues the fine-tuning phase it was in (the probe is not repeated).
    """
    if ctx.checkpoint:
        return fit_with_trainer(ctx)
    args, trainer, model = ctx.config.training, ctx.trainer, ctx.model
    probe_train = (
        ctx.datasets["train"]
        if ctx.augmentation is None
        else ctx.task.prepare_datasets(ctx.config, ctx.processor, ctx.data, ctx.model_config, augment=False)["train"]
    )
    fresh_head = None if ctx.options.fine_tune_from_probe else _copy_of_state(model, set(head_parameter_names(model)))
    probe = probe_phase(ctx, probe_train)
    model.requires_grad_(True)  # phase 2: full fine-tuning, from the probed head unless told otherwise
    probed_state = _copy_of_state(model)
    if fresh_head is not None:
        logger.info(
            "fine-tuning starts from the fresh head; the probe (%s) is kept if it scores higher", probe.best_metric
        )
        model.load_state_dict(fresh_head, strict=False)
    result = trainer.train()
    trainer.state.log_history = probe.log_history + trainer.state.log_history
    if args.load_best_model_at_end and probe_stays(ctx, trainer.state.best_metric, probe.best_metric):
        logger.info(
            "fine-tuning %s the linear probe (%s %s vs %s): keeping the probed model",
            "was not shown to beat" if ctx.options.contrastive_epochs else "did not beat",
            args.metric_for_best_model,
            trainer.state.best_metric,
            probe.best_metric,
        )
        model.load_state_dict(probed_state)
        return FitResult(result.metrics, probe.best)
    return FitResult(result.metrics, trainer.state.best_model_checkpoint)


def told_steps(ctx: FitContext, *options: str) -> bool:
    """Whether the user set how the probe steps (its epochs or rate, or ``max_steps``): then it trains by steps, as
    told, instead of being fitted as a logistic regression."""
    return any(name in ctx.config.explicit for name in (*options, "max_steps"))


def _copy_of_state(model, names: set[str] | None = None) -> dict:
    """A CPU copy of the model's state (only ``names`` when given)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items() if names is None or k in names}


def probe_phase(ctx: FitContext, probe_train) -> ProbeResult:
    """The probe; with ``contrastive_epochs``, one of two: the probe after the body's contrastive phase, unless the
    probe on the pretrained body's features (the frozen-feature arm) is shown better on validation (``shown_better``:
    6 validation examples cannot show it, and a noisy win there is no reason to drop the arm that wins on average,
    benchmarks/few_shot.py)."""
    args, options, model = ctx.config.training, ctx.options, ctx.model
    datasets = {**ctx.datasets, "train": probe_train}
    # a head fitted to the optimum is the model where the probe is the answer (a contrastive body's head, or the
    # fallback of fine-tuning from a fresh head); where fine-tuning starts from it, it trains by steps as before:
    # TREC (40 per class), fine-tuning from the fitted head stopped early at macro-F1 0.790 against 0.836
    fine_tuned_from = options.fine_tune_from_probe and not options.contrastive_epochs
    by_steps = fine_tuned_from or told_steps(ctx, "probe_epochs", "probe_learning_rate")
    if not options.contrastive_epochs:
        return train_probe(ctx, datasets, options.probe_epochs, options.probe_learning_rate, by_steps=by_steps)
    frozen = train_probe(ctx, datasets, options.probe_epochs, options.probe_learning_rate, by_steps=by_steps)
    frozen_state = _copy_of_state(model)
    rate = options.contrastive_learning_rate or args.learning_rate
    train_body_on_pairs(ctx, probe_train, options.contrastive_epochs, rate)
    paired = train_probe(ctx, datasets, options.probe_epochs, options.probe_learning_rate, by_steps=by_steps)
    compared = f"validation {args.metric_for_best_model} {paired.best_metric} against {frozen.best_metric}"
    if shown_better(frozen.best_metric, paired.best_metric, len(ctx.datasets["validation"]), args):
        logger.info("the frozen body's probe is shown better than the contrastive one (%s): keeping it", compared)
        model.load_state_dict(frozen_state)
        frozen.best = f"{frozen.best or 'the probe'} on the frozen body (the contrastive body's {compared})"
        return frozen
    logger.info("the contrastive body is kept: the frozen body's probe is not shown better (%s)", compared)
    return paired


def shown_better(first: float | None, second: float | None, examples: int, args) -> bool:
    """Whether ``first`` beats ``second`` on a validation split of ``examples`` examples by more than chance: by a
    one-sided test at the 5% level on the difference of two scores of that many examples, for scores that are
    shares of examples (accuracy, F1); a loss is compared as it is."""
    if first is None or second is None:
        return False
    if args.greater_is_better in (True, None):
        spread = (max(first * (1 - first), 0.0) / max(examples, 1)) ** 0.5 if 0 <= first <= 1 else 0.0
        return first - second > ONE_SIDED_95 * 2**0.5 * spread
    return first < second


def probe_stays(ctx: FitContext, fine_tuned: float | None, probed: float | None) -> bool:
    """Whether the probed model is kept over the fine-tuned one: when fine-tuning scores lower on validation; after a
    contrastive phase, unless fine-tuning is shown better (the contrastive body and its probe are SetFit's whole
    method, and cross-entropy on a few examples fits the validation split's noise: TREC-50 at 8 per class, seed 2,
    fine-tuning 0.804 against the probe's 0.751 validation macro-F1 on 78 examples, 0.626 test accuracy)."""
    args = ctx.config.training
    if ctx.options.contrastive_epochs:
        return not shown_better(fine_tuned, probed, len(ctx.datasets["validation"]), args)
    return _worse(fine_tuned, probed, args.greater_is_better)


def _worse(new: float | None, old: float | None, greater_is_better: bool | None) -> bool:
    if new is None or old is None:
        return False
    return new < old if greater_is_better in (True, None) else new > old


def train_probe(
    ctx: FitContext,
    datasets: dict,
    epochs: float,
    learning_rate: float,
    through_backbone_ok: bool = True,
    by_steps: bool = False,
) -> ProbeResult | None:
    """Train only the head: on cached features when possible (a logistic regression fitted to them, unless
    ``by_steps``: the user set the probe's epochs or learning rate), else (lp_ft) through the frozen backbone.

    Returns None when the features cannot be cached and ``through_backbone_ok`` is False (the caller then
    trains the usual way). Which parameters train is restored afterwards.
    """
    args, transfer, model = ctx.config.training, ctx.config.transfer, ctx.model
    with training_phase(model, set(head_parameter_names(model)), args, "probe") as probe_dir:
        probe_args = dataclasses.replace(
            args,
            output_dir=str(probe_dir),
            num_train_epochs=epochs,
            learning_rate=learning_rate,
            push_to_hub=False,
            save_total_limit=1,
            resume_from_checkpoint=None,
        )
        if transfer.cache_features:
            try:
                return _probe_on_features(ctx, datasets, probe_args, epochs, by_steps)
            except FeatureCacheUnavailable as reason:
                logger.info(
                    "features not cached (%s)%s",
                    reason,
                    "; the head trains through the frozen backbone" if not through_backbone_ok else "",
                )
        if not through_backbone_ok:
            return None
        trainer = ClassificationTrainer(
            model=model,
            args=probe_args,
            train_dataset=datasets["train"],
            eval_dataset=datasets["validation"],
            processing_class=ctx.processor,
            data_collator=ctx.trainer.data_collator,
            train_sampler=_the_runs_batches(ctx, datasets["train"]),
            **_metrics(ctx),
        )
        logger.info("training the head through the frozen backbone for %s epochs", epochs)
        return _probe_result(trainer, trainer.train())


def _probe_on_features(ctx: FitContext, datasets: dict, probe_args, epochs: float, by_steps: bool) -> ProbeResult:
    """The head trained on features computed once (and cached on disk) instead of through the backbone: fitted as a
    logistic regression where the head and its loss allow it (strategies/logistic_head.py), else by epochs."""
    started = time.perf_counter()
    splits = feature_datasets(
        ctx.model, datasets, ctx.trainer.data_collator, probe_args, ctx.config.transfer.feature_cache_dir
    )
    features_s = time.perf_counter() - started
    _, head_module = head_root(ctx.model)
    # features are small: the whole batch in one step, even where images ran as micro-batches (runtime.py)
    probe_args = dataclasses.replace(
        probe_args,
        dataloader_num_workers=0,
        dataloader_persistent_workers=False,
        remove_unused_columns=True,
        gradient_accumulation_steps=1,
        per_device_train_batch_size=probe_args.per_device_train_batch_size * probe_args.gradient_accumulation_steps,
    )
    trainer = ClassificationTrainer(
        model=HeadOnFeatures(head_module, getattr(getattr(ctx.model, "config", None), "problem_type", None)),
        args=probe_args,
        train_dataset=splits.train,
        eval_dataset=splits.validation,
        train_sampler=_the_runs_batches(ctx, datasets["train"]),
        **_metrics(ctx),
    )
    fitted = None if by_steps else _fit_logistic(ctx, head_module, splits.train)
    if fitted is None:
        logger.info("training the head on cached features for %s epochs", epochs)
        result = _probe_result(trainer, trainer.train())
    else:
        logger.info("the head on cached features: %s", fitted.describe())
        metrics = trainer.evaluate()
        name = probe_args.metric_for_best_model or "loss"
        best = metrics.get(name if name.startswith("eval_") else f"eval_{name}")
        result = ProbeResult({"train_loss": fitted.train_loss}, trainer.state.log_history, fitted.describe(), best)
    # the probe's cost includes computing (or reading) the features, not only the head's epochs
    result.metrics["features_runtime"] = round(features_s, 3)
    result.metrics["train_runtime"] = round(time.perf_counter() - started, 3)
    return result


def _fit_logistic(ctx: FitContext, head_module, train) -> LogisticFit | None:
    """The head fitted as a logistic regression on the training features, when it is one linear layer trained with
    (class-weighted) cross-entropy on single labels; None (nothing changed) otherwise."""
    rows, loss = train[:], ctx.trainer.compute_loss_func  # every row, as tensors (the splits' torch format)
    labels = rows["labels"]
    weight = getattr(loss, "weight", None)
    if (
        labels.is_floating_point()
        or (loss is not None and weight is None)
        or ctx.config.training.label_smoothing_factor
    ):
        return None
    linear = single_linear(head_module)
    if linear is None:
        return None
    return fit_logistic_head(
        linear,
        rows["features"].numpy(),
        labels.numpy(),
        None if weight is None else weight.numpy(),
        ctx.config.training.seed,
    )


def _the_runs_batches(ctx: FitContext, examples):
    """The run's order of training batches (texts: length buckets), computed from the training examples: features
    keep their examples' order, so a head trained on cached features sees the batches it would see through the
    backbone (the same head, tested)."""
    order = ctx.trainer.train_sampler
    return None if order is None else (lambda _dataset, batch_size: order(examples, batch_size))


def _metrics(ctx: FitContext) -> dict:
    """The run's metrics and loss (a multi-label pos_weight loss, when set), for the probe's own Trainer."""
    return {
        "compute_metrics": ctx.task.compute_metrics,
        "preprocess_logits_for_metrics": reduce_logits,
        "compute_loss_func": ctx.trainer.compute_loss_func,
    }


def _probe_result(trainer, result) -> ProbeResult:
    step = trainer.state.best_global_step
    best = f"probe step {step} of {trainer.state.global_step}" if step else None
    return ProbeResult(
        result.metrics,
        trainer.state.log_history,
        best,
        trainer.state.best_metric,
        trainer.state.global_step,
        trainer.state.epoch,
    )


def probe_phase_schedule(config, options: ProbeOptions, data) -> dict[str, tuple[Any, str]]:
    """lp_ft's epochs (engine/schedule.py gives the evidence): one fine-tuning epoch fewer than the task's when
    fine-tuning starts from the probed head (from a fresh head it does a full run's work), and the probe phase's
    floor of optimiser steps. ``max_steps`` bounds both phases, so it leaves both alone."""
    args, chosen = config.training, {}
    if options.contrastive_epochs and getattr(data, "multi_label", False):
        raise StrategyError(
            f"contrastive_epochs {options.contrastive_epochs:g} needs single-label data (pairs of one class); "
            "this data is multi-label: set contrastive_epochs 0"
        )
    if args.max_steps > 0:
        return chosen
    if args.num_train_epochs >= 2 and options.fine_tune_from_probe:
        chosen["num_train_epochs"] = (
            args.num_train_epochs - 1,
            "the probe phase has trained the head, the main work of a first epoch from a random head",
        )
    floor = probe_epochs_floor(len(data.splits["train"]), args)
    if floor > options.probe_epochs:
        chosen["probe_epochs"] = (floor, PROBE_FLOOR_REASON)
    return chosen


def card_rows(options: ProbeOptions) -> list[tuple[str, str]]:
    rows = [("probe epochs / learning rate", f"{options.probe_epochs:g} / {options.probe_learning_rate:g}")]
    if not options.fine_tune_from_probe:
        rows.append(("fine-tuning starts from", "the fresh head (the probe kept if it scores higher)"))
    if options.contrastive_epochs:
        rate = f"{options.contrastive_learning_rate:g}" if options.contrastive_learning_rate else "learning_rate"
        rows.append(("contrastive epochs / learning rate", f"{options.contrastive_epochs:g} / {rate}"))
    return rows
