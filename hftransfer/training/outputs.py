"""The end of a run: the final model, its config, metrics, evaluation report, plots and model card, written
whole, then the summary and the push.

The final model (the best checkpoint, with ``load_best_model_at_end``) and the run's config are written to a
staging folder beside output_dir's previous ones and replace them only once whole: a crash while saving
leaves the previous model usable, and the config beside a model is always the one that made it.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from hftransfer.backbones.heads import write_head_code
from hftransfer.config.recipes import CONFIG_FILE
from hftransfer.engine.budget import TimeBudget
from hftransfer.evaluation.console import print_eval_details, print_summary
from hftransfer.evaluation.report import save_eval_outputs
from hftransfer.files.atomic import publish_directory, staging_dir
from hftransfer.files.written import record_entries, recorded_entries
from hftransfer.training.hub import push_output_dir
from hftransfer.training.modelcard import build_model_card, write_model_card
from hftransfer.training.output_dir import OutputDirError

logger = logging.getLogger("hftransfer")
# What the Trainer's save_metrics and save_state write at the top of output_dir.
TRAINER_FILES = (
    "train_results.json",
    "eval_results.json",
    "test_results.json",
    "all_results.json",
    "trainer_state.json",
)


def budget_note(config, trainer) -> str:
    """How the time budget was spent, for the summary."""
    budget = next((c for c in trainer.callback_handler.callbacks if isinstance(c, TimeBudget)), None)
    used = time.monotonic() - config.started
    plan = f"; {budget.summary}" if budget is not None and budget.summary else ""
    return f"time budget {config.transfer.time_budget}: {used:.0f} s used{plan}"


def _stage_run_files(config, task, strategy, trainer, data, plan, reports: dict, staging: Path) -> None:
    """The run's config, head code, reports, figures and card, written beside the model in its staging folder."""
    out = Path(config.training.output_dir)
    if strategy.finish is not None:
        strategy.finish(trainer, staging, config.options_for(strategy))
    write_head_code(trainer.model, staging)
    if config.transfer.time_budget:  # before the config and the card are written: both say how it was spent
        config.outcomes.append(budget_note(config, trainer))
    config.save(staging / CONFIG_FILE)
    backbone = config.model.model or config.model.timm_arch
    args = config.training
    save_eval_outputs(staging, reports, Path(str(backbone)).name, trainer.state.log_history, args.metric_for_best_model)
    model_config = json.loads((staging / "config.json").read_text(encoding="utf-8"))
    card = build_model_card(
        config,
        task,
        strategy,
        data.label_names,
        reports,
        plan.describe(),
        model_config,
        out,
        num_train=None if data.streamed else len(data.splits["train"]),
        written_in=staging,
    )
    write_model_card(card, staging)


def save_run(
    config, task, strategy, trainer, data, plan, fitted, results: dict, reports: dict, push_to_hub: bool
) -> None:
    """Write everything a finished run leaves (see the module docstring); rank 0 writes, every rank saves."""
    args = config.training
    out, staging = Path(args.output_dir), staging_dir(args.output_dir)
    if trainer.is_world_process_zero():
        if staging.name in recorded_entries(out):
            shutil.rmtree(staging, ignore_errors=True)  # left by a run that crashed while saving
        record_entries(out, staging.name)
    try:
        trainer.save_model(str(staging))  # on every rank: FSDP and DeepSpeed gather the weights, rank 0 writes
        if trainer.is_world_process_zero():
            _stage_run_files(config, task, strategy, trainer, data, plan, reports, staging)
    except OSError as err:  # a full disk, a quota: nothing is published, the folder keeps what it had
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputDirError(
            f"the trained model could not be written to {str(out)!r}: {err.strerror or err}"
            f"{f' ({err.filename})' if err.filename else ''}; nothing was published there (an earlier model in it "
            "is untouched). Free space and run again"
        ) from None
    trainer.save_metrics("train", fitted.metrics)
    for prefix in ("eval", "test"):
        if any(k.startswith(f"{prefix}_") for k in results):
            trainer.save_metrics(prefix, {k: v for k, v in results.items() if k.startswith(f"{prefix}_")})
    if not trainer.is_world_process_zero():
        return
    trainer.save_state()
    # renames only, the weights last: until the new weights are in place the folder is the previous run's or none
    record_entries(out, *publish_directory(staging, out, replaceable=recorded_entries(out)))
    record_entries(out, *(out / name for name in TRAINER_FILES if (out / name).exists()))
    print_summary(config, data, fitted.metrics, results, fitted.best, plan.parameters, strategy=plan.describe())
    print_eval_details(reports)
    if push_to_hub:
        url = push_output_dir(out, repo_id=args.hub_model_id, private=args.hub_private_repo, revision=args.hub_revision)
        logger.info("pushed to the Hub: %s", url)
