"""The training recipe: parse → data → preprocessing → model → strategy → Trainer → train/evaluate → save.

Runs the same way as ``hftransfer train RECIPE.yaml``, ``python -m hftransfer.train --config RECIPE.yaml``
and ``accelerate launch -m hftransfer.train --config RECIPE.yaml``; every step of a task comes from the task
registry, so this file does not change when a task is added.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import torch
from transformers import EarlyStoppingCallback, Trainer, set_seed
from transformers.trainer_utils import get_last_checkpoint

from hftransfer.config import RunConfig, parse_config
from hftransfer.metrics import logits_to_predictions, per_class_report
from hftransfer.models import load_model_config
from hftransfer.registry import get_task
from hftransfer.report import print_summary
from hftransfer.strategies import apply_strategy, parameter_counts

logger = logging.getLogger("hftransfer")

CONFIG_FILE = "hftransfer_config.yaml"
REPORT_FILE = "per_class_report.json"


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
        last = get_last_checkpoint(config.training.output_dir) if Path(config.training.output_dir).is_dir() else None
        if last is None:
            raise OutputDirError(f"no checkpoint to resume from in {config.training.output_dir!r}")
        return last
    if not Path(wanted).is_dir():
        raise OutputDirError(f"checkpoint to resume from not found: {wanted!r}")
    return wanted


def run(config: RunConfig) -> dict:
    """Train, evaluate and save one run; returns the final metrics (``eval_*`` and ``test_*``)."""
    args = config.training
    task = get_task(config.model.task)
    check_output_dir(config)
    checkpoint = resolve_checkpoint(config)

    # Cheap checks first: a missing model or bad data fail before anything heavy happens.
    model_config = (task.load_model_config or load_model_config)(config)
    if task.suggest_training_args:
        for key, value in config.apply_suggestions(task.suggest_training_args(model_config)).items():
            logger.info("%s: %s (hftransfer's default for this checkpoint; set it to override)", key, value)
    data = task.load_data(config)
    processor = task.build_preprocessing(config, data, model_config)
    with args.main_process_first(desc="preprocessing"):  # rank 0 fills the datasets cache, the others reuse it
        datasets = task.prepare_datasets(config, processor, data, model_config)

    set_seed(args.seed)  # the new head's initialisation is part of the run's reproducibility
    model = task.build_model(config, data, model_config)
    apply_strategy(model, config.transfer.strategy)
    trainable, total = parameter_counts(model)

    if args.use_cpu or not torch.cuda.is_available():
        # Denormal floats are very slow on CPUs and carry no useful precision for training.
        torch.set_flush_denormal(True)
        args.dataloader_pin_memory = False  # pinning needs an accelerator; on CPU it only warns

    if args.dataloader_num_workers == 0:
        args.dataloader_persistent_workers = False  # nothing to keep alive (torch refuses the combination)

    callbacks = []
    if config.transfer.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.transfer.early_stopping_patience))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=datasets["train"],
        eval_dataset=datasets["validation"],
        processing_class=processor,
        data_collator=task.build_collator(config, processor),
        compute_metrics=task.compute_metrics,
        preprocess_logits_for_metrics=logits_to_predictions,
        callbacks=callbacks,
    )
    if trainer.is_world_process_zero():
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        config.save(Path(args.output_dir) / CONFIG_FILE)
        for note in data.notes:
            logger.info(note)
        logger.info("trainable parameters: %s of %s (%.1f%%), strategy %s", f"{trainable:,}", f"{total:,}",
                    100 * trainable / total, config.transfer.strategy)

    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model()  # the best checkpoint, with load_best_model_at_end (the default)
    trainer.save_metrics("train", train_result.metrics)

    results, reports = {}, {}
    for split, prefix in (("validation", "eval"), ("test", "test")):
        if split not in datasets:
            continue
        prediction = trainer.predict(datasets[split], metric_key_prefix=prefix)
        trainer.save_metrics(prefix, prediction.metrics)
        results.update(prediction.metrics)
        reports[split] = per_class_report(prediction.label_ids, prediction.predictions, data.label_names)
    if trainer.is_world_process_zero():
        trainer.save_state()
        (Path(args.output_dir) / REPORT_FILE).write_text(json.dumps(reports, indent=2), encoding="utf-8")
        print_summary(config, data, train_result.metrics, results, trainer.state.best_model_checkpoint,
                      (trainable, total))
    return results


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
