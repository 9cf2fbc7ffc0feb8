"""The training recipe: parse → data → preprocessing → model → strategy → Trainer → train/evaluate → save.

Runs the same way as ``hftransfer train RECIPE.yaml``, ``python -m hftransfer.train --config RECIPE.yaml``
and ``accelerate launch -m hftransfer.train --config RECIPE.yaml``; every step of a task comes from the task
registry, so this file does not change when a task is added.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import EarlyStoppingCallback, set_seed
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import sort_checkpoints

from hftransfer.atomic import publish_directory, staging_dir
from hftransfer.config import RunConfig, parse_config
from hftransfer.evaluation import evaluate_splits, reduce_logits, save_eval_outputs
from hftransfer.hub import push_output_dir, resolve_token
from hftransfer.modelcard import build_model_card, write_model_card
from hftransfer.models import load_model_config
from hftransfer.registry import get_task
from hftransfer.runs import CONFIG_FILE
from hftransfer.report import print_eval_details, print_summary
from hftransfer.blocks import head_parameter_names
from hftransfer.features import FeatureCacheUnavailable, HeadOnFeatures, feature_datasets, head_root
from hftransfer.heads import apply_head, write_head_code
from hftransfer.lora import apply_lora, save_lora
from hftransfer.performance import apply_performance_options, check_performance_options
from hftransfer.strategies import (StrategyError, apply_strategy, get_strategy, keep_frozen_parts_in_eval,
                                   parameter_counts)
from hftransfer.trainer import ClassificationTrainer, TransferTrainer

logger = logging.getLogger("hftransfer")



class OutputDirError(ValueError):
    """An output directory that would be overwritten without being asked."""


def check_output_dir(config: RunConfig) -> None:
    """Refuse to write into a non-empty output directory unless told to overwrite or resume."""
    out = Path(config.training.output_dir)
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"output_dir {str(out)!r} exists and is not a directory")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if config.transfer.overwrite_output_dir or config.training.resume_from_checkpoint:
        return
    raise OutputDirError(
        f"output_dir {str(out)!r} is not empty; choose another output_dir, pass --overwrite_output_dir to replace "
        "its model, or --resume_from_checkpoint to continue the run in it"
    )


def resolve_checkpoint(config: RunConfig) -> str | None:
    """``resume_from_checkpoint``: a path, or ``latest``/``true`` for the newest checkpoint in output_dir."""
    wanted = config.training.resume_from_checkpoint
    if wanted is None or wanted.lower() in {"false", "no", "none", ""}:
        return None
    if wanted.lower() in {"latest", "true", "yes"}:
        last = latest_complete_checkpoint(config.training.output_dir)
        if last is None:
            raise OutputDirError(f"no checkpoint to resume from in {config.training.output_dir!r}")
        return last
    if not Path(wanted).is_dir():
        raise OutputDirError(f"checkpoint to resume from not found: {wanted!r}")
    if not _is_complete(Path(wanted)):
        raise OutputDirError(f"checkpoint {wanted!r} is incomplete (its {TRAINER_STATE_NAME} is missing or cut "
                             "short: the run stopped while writing it); resume from an earlier one")
    return wanted


def latest_complete_checkpoint(output_dir: str) -> str | None:
    """The newest ``checkpoint-N`` that was written whole.

    A run killed while writing a checkpoint leaves a folder with part of its files, which transformers'
    ``get_last_checkpoint`` would pick and resuming would then fail on. The Trainer writes
    ``trainer_state.json`` last, so a checkpoint whose state file is there and parses is complete.
    """
    if not Path(output_dir).is_dir():
        return None
    for checkpoint in reversed(sort_checkpoints(output_dir)):  # newest step first
        if _is_complete(Path(checkpoint)):
            return checkpoint
        logger.warning("skipping %s: incomplete (the run stopped while writing it)", checkpoint)
    return None


def _is_complete(checkpoint: Path) -> bool:
    try:
        json.loads((checkpoint / TRAINER_STATE_NAME).read_text(encoding="utf-8"))
        return True
    except (OSError, ValueError):
        return False


def run(config: RunConfig) -> dict:
    """Train, evaluate and save one run; returns the final metrics (``eval_*`` and ``test_*``)."""
    args, transfer = config.training, config.transfer
    task = get_task(config.model.task)
    strategy = get_strategy(transfer.strategy)
    check_performance_options(task, transfer, args)
    check_output_dir(config)
    checkpoint = resolve_checkpoint(config)
    if strategy.name == "gradual" and args.world_size > 1:
        raise StrategyError("strategy gradual changes which parameters train during the run, which "
                            "DistributedDataParallel cannot follow; with several processes use partial or lp_ft")

    # The final push is hftransfer's (model card, filtered files, rank 0 only), not the Trainer's, which would
    # upload its own card and, by default, every checkpoint as it is saved.
    push_to_hub, args.push_to_hub = args.push_to_hub, False
    if push_to_hub and args.process_index == 0:
        resolve_token()  # not logged in: say so now, not after hours of training

    # Cheap checks first: a missing model or bad data fail before anything heavy happens.
    model_config = (task.load_model_config or load_model_config)(config)
    suggestions = task.suggest_training_args(model_config) if task.suggest_training_args else {}
    suggestions = {**suggestions, **strategy.training_suggestions}
    if strategy.learning_rate_scale != 1:
        suggestions["learning_rate"] = suggestions.get("learning_rate", args.learning_rate) * strategy.learning_rate_scale
    for key, value in config.apply_suggestions(suggestions).items():
        logger.info("%s: %s (hftransfer's default for this checkpoint and strategy; set it to override)", key, value)
    data = task.load_data(config)
    processor = task.build_preprocessing(config, data, model_config)
    with args.main_process_first(desc="preprocessing"):  # rank 0 fills the datasets cache, the others reuse it
        datasets = task.prepare_datasets(config, processor, data, model_config)
    augmentation = task.training_augmentation(config) if task.training_augmentation else None

    set_seed(args.seed)  # the new head's initialisation is part of the run's reproducibility
    model = task.build_model(config, data, model_config)
    head_summary = apply_head(model, transfer)
    plan = apply_strategy(model, transfer, args.num_train_epochs)
    head_names = set(head_parameter_names(model))
    if strategy.name == "lora":
        model, targets = apply_lora(model, transfer)
        plan.eventually_trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        head_names = {n for n in plan.eventually_trainable if ".modules_to_save." in n}
        plan.trainable_blocks = [f"rank-{transfer.lora_r} adapters on {len(targets)} modules "
                                 f"({', '.join(_short(targets))}) + head"]
    if strategy.name != "full":
        keep_frozen_parts_in_eval(model, transfer.frozen_norm_stats == "update")
    trainable, total = parameter_counts(model)

    if args.use_cpu or not torch.cuda.is_available():
        # Denormal floats are very slow on CPUs and carry no useful precision for training.
        torch.set_flush_denormal(True)
        args.dataloader_pin_memory = False  # pinning needs an accelerator; on CPU it only warns
    if args.dataloader_num_workers == 0:
        args.dataloader_persistent_workers = False  # nothing to keep alive (torch refuses the combination)

    callbacks = list(plan.callbacks)
    if transfer.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=transfer.early_stopping_patience))
    collator = apply_performance_options(model, task.build_collator(config, processor), task, transfer, args)
    trainer = TransferTrainer(
        model=model,
        args=args,
        train_dataset=datasets["train"],
        eval_dataset=datasets["validation"],
        processing_class=processor,
        data_collator=collator,
        compute_metrics=task.compute_metrics,
        preprocess_logits_for_metrics=reduce_logits,
        callbacks=callbacks,
        plan=plan, transfer=transfer, head_names=head_names,
    )
    description = f"{plan.describe()}; {head_summary}"
    if trainer.is_world_process_zero():
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        config.save(Path(args.output_dir) / CONFIG_FILE)
        for note in data.notes:
            logger.info(note)
        logger.info("strategy %s; trainable parameters: %s of %s (%.1f%%)", description, f"{trainable:,}",
                    f"{total:,}", 100 * trainable / total)

    train_metrics, best = fit(config, trainer, model, datasets, task, processor, data, model_config, augmentation,
                              checkpoint)
    # The final model (the best checkpoint, with load_best_model_at_end) is written beside output_dir's
    # previous one and replaces it only once whole: a crash while saving leaves the previous model usable.
    staging = staging_dir(args.output_dir)
    if trainer.is_world_process_zero():
        shutil.rmtree(staging, ignore_errors=True)  # left by a run that crashed while saving
    trainer.save_model(str(staging))  # on every rank: FSDP and DeepSpeed gather the weights, rank 0 writes
    trainer.save_metrics("train", train_metrics)

    results, reports = evaluate_splits(trainer, datasets, data, task)
    for prefix in ("eval", "test"):
        if any(k.startswith(f"{prefix}_") for k in results):
            trainer.save_metrics(prefix, {k: v for k, v in results.items() if k.startswith(f"{prefix}_")})
    if trainer.is_world_process_zero():
        out = Path(args.output_dir)
        if strategy.name == "lora":
            save_lora(trainer, str(staging), transfer.lora_save)
        write_head_code(trainer.model, staging)
        publish_directory(staging, out)
        trainer.save_state()
        backbone = config.model.model or config.model.timm_arch
        save_eval_outputs(out, reports, f"{Path(str(backbone)).name}", trainer.state.log_history,
                          args.metric_for_best_model)
        model_config = json.loads((out / "config.json").read_text(encoding="utf-8"))
        card = build_model_card(config, task.name, data.label_names, reports, description, model_config, out,
                                num_train=len(data.splits["train"]))
        write_model_card(card, out)
        print_summary(config, data, train_metrics, results, best, (trainable, total), strategy=description)
        print_eval_details(reports)
        if push_to_hub:
            url = push_output_dir(out, repo_id=args.hub_model_id, private=args.hub_private_repo,
                                  revision=args.hub_revision)
            logger.info("pushed to the Hub: %s", url)
    return results


def fit(config, trainer, model, datasets, task, processor, data, model_config, augmentation, checkpoint):
    """Train as the strategy says; returns (train metrics, where the kept weights come from).

    linear_probe: on cached features when nothing is augmented, else through the frozen backbone.
    lp_ft: the probe (on un-augmented examples, as in Kumar et al.), then full fine-tuning from the probed
    head; when fine-tuning never beats the probe on validation, the probed model is kept.
    Everything else: one Trainer run (gradual's unfreezing happens in its callback).
    """
    args, transfer = config.training, config.transfer
    collator = trainer.data_collator
    if transfer.strategy == "linear_probe" and transfer.cache_features and augmentation is None and not checkpoint:
        probe = train_probe(config, model, datasets, collator, task, processor, args.num_train_epochs,
                            transfer.head_learning_rate or args.learning_rate, through_backbone_ok=False)
        if probe is not None:
            trainer.state.log_history = probe.log_history
            return probe.metrics, probe.best
    if transfer.strategy != "lp_ft" or checkpoint:
        result = trainer.train(resume_from_checkpoint=checkpoint)
        return result.metrics, trainer.state.best_model_checkpoint

    probe_train = datasets["train"] if augmentation is None else \
        task.prepare_datasets(config, processor, data, model_config, augment=False)["train"]
    probe = train_probe(config, model, {**datasets, "train": probe_train}, collator, task, processor,
                        transfer.probe_epochs, transfer.probe_learning_rate)
    model.requires_grad_(True)  # phase 2: full fine-tuning from the probed head
    probed_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    result = trainer.train()
    trainer.state.log_history = probe.log_history + trainer.state.log_history
    if args.load_best_model_at_end and _worse(trainer.state.best_metric, probe.best_metric, args.greater_is_better):
        logger.info("fine-tuning did not beat the linear probe (%s %s vs %s): keeping the probed model",
                    args.metric_for_best_model, trainer.state.best_metric, probe.best_metric)
        model.load_state_dict(probed_state)
        return result.metrics, probe.best
    return result.metrics, trainer.state.best_model_checkpoint


def _short(names: list[str], shown: int = 3) -> list[str]:
    suffixes = sorted({n.rsplit(".", 1)[-1] for n in names})
    return suffixes[:shown] + (["…"] if len(suffixes) > shown else [])


@dataclass
class ProbeResult:
    metrics: dict
    log_history: list
    best: str | None = None  # where the kept head came from (the probe's checkpoints are removed)
    best_metric: float | None = None  # its metric_for_best_model


def _probe_result(trainer, result) -> ProbeResult:
    step = trainer.state.best_global_step
    best = f"probe step {step} of {trainer.state.global_step}" if step else None
    return ProbeResult(result.metrics, trainer.state.log_history, best, trainer.state.best_metric)


def _worse(new: float | None, old: float | None, greater_is_better: bool | None) -> bool:
    if new is None or old is None:
        return False
    return new < old if greater_is_better in (True, None) else new > old


def train_probe(config, model, datasets, collator, task, processor, epochs: float, learning_rate: float,
                through_backbone_ok: bool = True) -> ProbeResult | None:
    """Train only the head: on cached features when possible, else (lp_ft) through the frozen backbone.

    The probe runs in a sub-folder of output_dir that is removed afterwards; its best epoch (by the run's
    metric_for_best_model) is what the head keeps.
    """
    args, transfer = config.training, config.transfer
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    head = set(head_parameter_names(model))
    for name, param in model.named_parameters():
        param.requires_grad_(name in head)
    probe_dir = Path(args.output_dir) / "probe"
    probe_args = dataclasses.replace(
        args, output_dir=str(probe_dir), num_train_epochs=epochs, learning_rate=learning_rate, push_to_hub=False,
        save_total_limit=1, resume_from_checkpoint=None)
    common = dict(compute_metrics=task.compute_metrics, preprocess_logits_for_metrics=reduce_logits)
    try:
        if transfer.cache_features:
            try:
                started = time.perf_counter()
                splits = feature_datasets(model, datasets, collator, probe_args, transfer.feature_cache_dir)
                features_s = time.perf_counter() - started
                _, head_module = head_root(model)
                probe_args = dataclasses.replace(probe_args, dataloader_num_workers=0,
                                                 dataloader_persistent_workers=False, remove_unused_columns=True)
                trainer = ClassificationTrainer(model=HeadOnFeatures(head_module), args=probe_args,
                                                train_dataset=splits.train, eval_dataset=splits.validation, **common)
                logger.info("training the head on cached features for %s epochs", epochs)
                result = _probe_result(trainer, trainer.train())
                # the probe's cost includes computing (or reading) the features, not only the head's epochs
                result.metrics["features_runtime"] = round(features_s, 3)
                result.metrics["train_runtime"] = round(time.perf_counter() - started, 3)
                return result
            except FeatureCacheUnavailable as reason:
                if not through_backbone_ok:
                    logger.info("features not cached (%s); the head trains through the frozen backbone", reason)
                    return None
                logger.info("features not cached (%s)", reason)
        if not through_backbone_ok:
            return None
        trainer = ClassificationTrainer(model=model, args=probe_args, train_dataset=datasets["train"],
                                        eval_dataset=datasets["validation"], processing_class=processor,
                                        data_collator=collator, **common)
        logger.info("training the head through the frozen backbone for %s epochs", epochs)
        return _probe_result(trainer, trainer.train())
    finally:
        for name, param in model.named_parameters():
            param.requires_grad_(name in trainable)
        if args.process_index == 0:
            shutil.rmtree(probe_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("hftransfer").setLevel(logging.INFO)
    config = parse_config(argv)
    run(config)
    return 0


if __name__ == "__main__":
    from hftransfer.cli import run_with_clean_errors
    from hftransfer.runtime import reexec_with_tuned_malloc

    reexec_with_tuned_malloc("hftransfer.train", sys.argv[1:])
    sys.exit(run_with_clean_errors(main, sys.argv[1:]))
