"""The training recipe: parse → checks → data → preprocessing → model → strategy → Trainer → fit → calibrate →
evaluate → save.

Runs the same way from ``hftransfer train RECIPE.yaml``, ``python -m hftransfer.train --config RECIPE.yaml``,
``accelerate launch -m hftransfer.train --config RECIPE.yaml`` and ``hftransfer.train(...)`` in Python. Every
step of a task comes from the task registry and every step of a strategy from the strategy registry, so this
file does not change when either is added. ``run_unlocked`` reads top to bottom: a ``FineTuning`` settles every
decision, trains, evaluates, and ``save_run`` writes what it leaves; each step is a function below.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from transformers import EarlyStoppingCallback, set_seed

from hftransfer.backbones.checkpoints import load_model_config
from hftransfer.backbones.heads import apply_head
from hftransfer.config.options import parse_duration
from hftransfer.data import leaks
from hftransfer.data.labels import LabelledData
from hftransfer.data.streaming import is_streamed
from hftransfer.engine.budget import TimeBudget
from hftransfer.engine.calibrate import calibrate
from hftransfer.engine.imbalance import adjust_for_priors, class_weighted_loss, resolve_imbalance
from hftransfer.engine.losses import loss_for, start_at_label_priors
from hftransfer.engine.performance import (
    apply_performance_options,
    check_performance_options,
    default_channels_last,
)
from hftransfer.engine.progress import quiet_library_progress_bars
from hftransfer.engine.runtime import configure_cpu_run, split_image_batch
from hftransfer.engine.schedule import schedule_for, stream_evaluations
from hftransfer.engine.trainer import TransferTrainer
from hftransfer.evaluation.report import evaluate_splits, reduce_logits
from hftransfer.files.readers import refusing_code_in_pickles
from hftransfer.strategies import get_strategy, options_of_other_strategies, resolve_strategy
from hftransfer.strategies.base import (
    FitContext,
    FitResult,
    Strategy,
    StrategyError,
    StrategyPlan,
    apply_strategy,
    parameter_counts,
)
from hftransfer.strategies.freezing import keep_frozen_parts_in_eval
from hftransfer.strategies.rates import parameter_groups
from hftransfer.tasks import get_task
from hftransfer.tasks.base import Task
from hftransfer.training.hub import resolve_token
from hftransfer.training.output_dir import (
    RunRecordCallback,
    check_output_dir,
    output_dir_lock,
    resolve_checkpoint,
    start_clean,
    verify_checkpoint,
)
from hftransfer.training.outputs import save_run
from hftransfer.training.parse import RunConfig, parse_config
from hftransfer.training.plan import Plan, print_plan, settle

logger = logging.getLogger("hftransfer")


@dataclass
class RunResult:
    """What a finished run gives back: where it was saved, its metrics (``eval_*``, ``test_*``) and reports."""

    output_dir: Path
    metrics: dict
    reports: dict
    config: RunConfig
    model: Any = None  # the trained model, as saved (the best checkpoint's weights, calibrated)
    trainer: Any = None  # the Trainer that trained it (its state, log history and evaluate/predict)
    plan: Plan | None = None  # every decision, settled before training (what --dry_run prints)


def run(config: RunConfig, recipe: Callable[..., FineTuning] | None = None) -> RunResult:
    """Train, evaluate and save one run (holding output_dir's lock throughout)."""
    with output_dir_lock(config):
        return run_unlocked(config, recipe)


def run_unlocked(config: RunConfig, recipe: Callable[..., FineTuning] | None = None) -> RunResult:
    """The run itself: settle every decision, then train, evaluate and save. ``recipe``: a ``FineTuning`` subclass
    (``distillation/recipe.py``), called as ``FineTuning`` is."""
    run = (recipe or FineTuning)(config, get_task(config.model.task), get_strategy(config.transfer.strategy))
    plan = run.settle()
    if config.transfer.dry_run:
        print_plan(config, plan, run.data)
        return RunResult(Path(config.training.output_dir), {}, {}, config, plan=plan)
    fitted = run.train()
    results, reports = run.evaluate()
    save_run(
        config,
        run.task,
        run.strategy,
        run.trainer,
        run.data,
        run.strategy_plan,
        fitted,
        results,
        reports,
        run.push_to_hub,
    )
    return RunResult(Path(config.training.output_dir), results, reports, config, run.trainer.model, run.trainer, plan)


@dataclass
class FineTuning:
    """One run's objects, each made once by the step that owns it (the shape of torchtune's recipe classes):
    ``settle`` checks, reads the data, builds the backbone and makes every decision; ``train`` prepares the
    examples, applies the strategy and fits; ``evaluate`` calibrates and scores every split."""

    config: RunConfig
    task: Task
    strategy: Strategy  # the one named; ``settle`` replaces ``auto`` by the one it chooses
    checkpoint: str | None = None  # the checkpoint resumed
    push_to_hub: bool = False
    model_config: Any = None
    data: LabelledData | None = None
    processor: Any = None  # the task's tokenizer or image processor
    model: nn.Module | None = None
    datasets: dict[str, Any] = field(default_factory=dict)
    strategy_plan: StrategyPlan | None = None
    trainer: TransferTrainer | None = None

    def settle(self) -> Plan:
        """Everything that can be refused, then the facts the decisions need, then the decisions, frozen."""
        config, task = self.config, self.task
        self.checkpoint, self.push_to_hub = check_before_work(config, task, self.strategy)
        configure_process(config, task)
        self.model_config = (task.load_model_config or load_model_config)(config)  # the cheapest proof it exists
        self.data = self.read_data()
        check_data(config, self.data)
        self.processor = task.build_preprocessing(config, self.data, self.model_config)
        self.model = build_backbone(config, task, self.data, self.model_config)
        self.strategy = resolve_strategy(  # auto decides here
            self.strategy, config, task, self.model, self.processor, self.data, self.model_config
        )
        apply_training_defaults(config, task, self.strategy, self.model_config, self.data)
        resolve_imbalance(config, self.data)
        if self.checkpoint:
            verify_checkpoint(self.checkpoint, config)
        return settle(config)  # from here on, nothing changes the config

    def train(self) -> FitResult:
        config, task, data = self.config, self.task, self.data
        with config.training.main_process_first(desc="preprocessing"):  # rank 0 fills the cache, the others reuse it
            self.datasets = task.prepare_datasets(config, self.processor, data, self.model_config)
        self.model, self.strategy_plan = adapt_model(config, self.strategy, self.model)
        start_at_label_priors(self.model, self.strategy_plan, data)
        self.trainer = self.make_trainer()
        announce_start(config, self.trainer, data, self.strategy_plan)
        return self.strategy.fit(self.fit_context())

    def read_data(self) -> LabelledData:
        return self.task.load_data(self.config)

    def make_trainer(self, trainer_class: type[TransferTrainer] = TransferTrainer, **extra) -> TransferTrainer:
        """The run's Trainer; ``extra``: what a ``trainer_class`` of a subclass takes besides."""
        config = self.config
        return build_trainer(
            config,
            self.task,
            self.model,
            self.strategy_plan,
            self.processor,
            self.datasets,
            compute_loss_func=loss_for(config, self.data) or class_weighted_loss(config, self.data),
            trainer_class=trainer_class,
            **extra,
        )

    def fit_context(self) -> FitContext:
        """The typed view of this run a strategy's ``fit`` receives."""
        task = self.task
        return FitContext(
            self.config,
            self.trainer,
            self.model,
            self.datasets,
            task,
            self.processor,
            self.data,
            self.model_config,
            task.training_augmentation(self.config) if task.training_augmentation else None,
            self.checkpoint,
            self.config.options_for(self.strategy),
        )

    def evaluate(self) -> tuple[dict, dict]:
        """(metrics, reports) of every split, after fitting the temperature on validation and adjusting for the
        classes' priors (``imbalance``)."""
        temperature, logits_read = calibrate(self.config, self.trainer, self.datasets, self.data, self.strategy_plan)
        shift = adjust_for_priors(self.config, self.trainer.model, self.data, self.strategy_plan.head_names)
        return evaluate_splits(
            self.trainer,
            self.datasets,
            self.data,
            self.task,
            temperature=temperature,
            tune_thresholds=self.config.data.threshold_objective,
            logits_read=logits_read,
            shift=shift,
        )


def check_data(config: RunConfig, data: LabelledData) -> None:
    """The cheap checks of every run: exact copies across splits, classes too small to validate. Their warnings
    go to the log, the summary, the saved config and the model card."""
    for note in (leaks.exact_leaks(data), leaks.classes_too_small(data)):
        if note:
            logger.warning(note)
            config.notes.append(note)


def configure_process(config: RunConfig, task: Task) -> None:
    """Settings every later step runs under, set before the first heavy one (``auto``'s feature pass: GTSRB, 1,000
    images, 23 s under them, 46 s with glibc's allocator defaults and larger evaluation batches)."""
    args = config.training
    quiet_library_progress_bars()
    if args.use_cpu or not torch.cuda.is_available():
        note = (
            split_image_batch(args) if task.pixel_key and "gradient_accumulation_steps" not in config.explicit else None
        )
        if note:
            config.notes.append(note)
            logger.info(note)
            for option in ("per_device_train_batch_size", "gradient_accumulation_steps"):
                config.sources[option], config.reasons[option] = "this machine (a CPU)", note
        eval_batch = args.per_device_eval_batch_size
        configure_cpu_run(args, eval_batch_chosen="per_device_eval_batch_size" in config.explicit)
        if args.per_device_eval_batch_size != eval_batch:
            config.sources["per_device_eval_batch_size"] = "this machine (a CPU)"
            config.reasons["per_device_eval_batch_size"] = "no larger than training's: it reuses their memory"
    if args.dataloader_num_workers == 0:
        args.dataloader_persistent_workers = False  # nothing to keep alive (torch refuses the combination)
    if config.transfer.channels_last is None and task.pixel_key:
        chosen = default_channels_last(task, args)
        why = "convolutions on a CPU run fastest in NHWC" if chosen else "not measured on this accelerator yet"
        config.choose("channels_last", chosen, "this machine", why, note=False)


def check_before_work(config: RunConfig, task: Task, strategy: Strategy) -> tuple[str | None, bool]:
    """Everything that can be refused before loading anything; returns (checkpoint to resume, push at the end)."""
    args = config.training
    check_performance_options(task, config.transfer, args)
    check_output_dir(config)
    checkpoint = resolve_checkpoint(config)
    if not strategy.multi_process and args.world_size > 1:
        raise StrategyError(
            f"strategy {strategy.name} cannot run on {args.world_size} processes: {strategy.multi_process_hint}"
        )
    # The final push is hftransfer's (model card, filtered files, rank 0 only), not the Trainer's, which would
    # upload its own card and, by default, every checkpoint as it is saved.
    push_to_hub, args.push_to_hub = args.push_to_hub, False
    if push_to_hub and args.process_index == 0:
        resolve_token()  # not logged in: say so now, not after hours of training
    return checkpoint, push_to_hub


def apply_training_defaults(config: RunConfig, task: Task, strategy: Strategy, model_config, data) -> None:
    """The task's values for this checkpoint, the strategy's own and the schedule the data calls for, where the
    user chose none; each is logged with its reason."""
    ignored = options_of_other_strategies(strategy, config.explicit)
    if ignored:
        logger.warning(
            "%s only appl%s to other strategies: ignored with strategy %s",
            ", ".join(ignored),
            "ies" if len(ignored) == 1 else "y",
            strategy.name,
        )
    suggestions = task.suggest_training_args(model_config) if task.suggest_training_args else {}
    suggestions = {**suggestions, **strategy.training_suggestions}
    if strategy.learning_rate_scale != 1:
        base = suggestions.get("learning_rate", config.training.learning_rate)
        suggestions["learning_rate"] = base * strategy.learning_rate_scale
    applied = config.apply_suggestions(suggestions)
    if data.streamed and config.training.world_size > 1:
        # Each process reads the stream and keeps its own batches (accelerate shards it). Dispatching, its default
        # for streams, concatenates the first process's batches, which fails for batches padded to their own length.
        config.training.accelerator_config.dispatch_batches = False
    scheduled = {
        key: chosen for key, chosen in schedule_for(config, strategy, data).items() if key not in config.explicit
    }
    for key, value in applied.items():  # logged once, with the value the run uses (the schedule may replace it)
        if key not in scheduled:
            logger.info(
                "%s: %s (hftransfer's default for this checkpoint and strategy; set it to override)", key, value
            )
    for key, (value, reason) in scheduled.items():
        config.choose(key, value, "chosen for this data and strategy", reason)
        logger.info("%s: %s (%s; set it to override)", key, getattr(value, "value", value), reason)


def build_backbone(config: RunConfig, task: Task, data, model_config):
    """The pretrained backbone with a new head for the labels."""
    set_seed(config.training.seed)  # the new head's initialisation is part of the run's reproducibility
    with refusing_code_in_pickles(config.model.model or config.model.weights):
        return task.build_model(config, data, model_config)


def adapt_model(config: RunConfig, strategy: Strategy, model):
    """The head the options ask for, then the strategy's freezing and adapters; returns (model, plan)."""
    head = apply_head(model, config.transfer)
    model, plan = apply_strategy(
        strategy, model, config.transfer, config.options_for(strategy), config.training.num_train_epochs
    )
    plan.head, plan.parameters = head, parameter_counts(model)
    if strategy.freezes:
        keep_frozen_parts_in_eval(model, config.transfer.frozen_norm_stats == "update")
    return model, plan


def build_trainer(
    config: RunConfig,
    task: Task,
    model,
    plan,
    processor,
    datasets,
    compute_loss_func=None,
    trainer_class: type[TransferTrainer] = TransferTrainer,
    **extra,
) -> TransferTrainer:
    """A Trainer with the strategy's parameter groups and callbacks, early stopping and run records
    (``compute_loss_func``: a loss other than the model's own, ``engine/losses.py``; ``extra``: ``trainer_class``'s
    own arguments)."""
    args, transfer = config.training, config.transfer
    callbacks = [*plan.callbacks, *config.callbacks]
    if transfer.time_budget:
        evaluated = sum(len(datasets[s]) for s in ("validation", "test") if s in datasets)
        callbacks.append(
            TimeBudget(
                parse_duration(transfer.time_budget),
                config.started,
                evaluated,
                args.per_device_train_batch_size * args.gradient_accumulation_steps,
                evaluations=stream_evaluations(config) if is_streamed(datasets["train"]) else None,
            )
        )
    if transfer.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=transfer.early_stopping_patience))
    callbacks.append(RunRecordCallback(config))  # last: it records the checkpoints the others decided to save
    collator = apply_performance_options(model, task.build_collator(config, processor), task, transfer, args)
    return trainer_class(
        model=model,
        args=args,
        train_dataset=datasets["train"],
        eval_dataset=datasets["validation"],
        processing_class=processor,
        data_collator=collator,
        compute_metrics=task.compute_metrics,
        preprocess_logits_for_metrics=reduce_logits,
        callbacks=callbacks,
        compute_loss_func=compute_loss_func,
        param_groups=partial(parameter_groups, plan=plan, transfer=transfer),
        train_sampler=partial(task.train_sampler, config) if task.train_sampler else None,
        **extra,
    )


def announce_start(config: RunConfig, trainer, data, plan) -> None:
    """Training starts: clear a replaced run's checkpoints, then say what trains and what the data is."""
    if not trainer.is_world_process_zero():
        return
    start_clean(config)
    for note in data.notes:
        logger.info(note)
    trainable, total = plan.parameters
    logger.info(
        "strategy %s; trainable parameters: %s of %s (%.1f%%)",
        plan.describe(),
        f"{trainable:,}",
        f"{total:,}",
        100 * trainable / total,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("hftransfer").setLevel(logging.INFO)
    run(parse_config(argv))
    return 0
