"""The parsed configuration of one run (``RunConfig``): its option sections, where each value came from and why,
and the resolved YAML it saves."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Any

import yaml
from transformers import TrainingArguments

from hftransfer.config.options import DataArguments, ModelArguments, TransferArguments
from hftransfer.files.atomic import write_text_atomically
from hftransfer.strategies import get_strategy

# Never written to the resolved config: secrets, and values that only make sense for one process or one
# invocation (repeating a run from its saved config starts it afresh, it does not resume it).
_UNSAVED_FIELDS = {"hub_token", "local_rank", "resume_from_checkpoint"}
# Chosen for the machine the run happens on (and for where its output goes); saved only when the user chose them,
# so the saved config of a CPU run still uses the GPU (and DataLoader workers) on a machine that has one.
_MACHINE_FIELDS = {"use_cpu", "dataloader_num_workers", "dataloader_persistent_workers", "disable_tqdm"}


@dataclass
class RunConfig:
    """The parsed configuration of one run."""

    model: ModelArguments
    data: DataArguments
    transfer: TransferArguments
    training: TrainingArguments
    task: Any = None  # the task's own options (an instance of its Task.options dataclass), if it has any
    explicit: frozenset[str] = frozenset()  # options the recipe or the command line set (not defaults)
    # each registered strategy's own options (an instance of its Strategy.options dataclass), by strategy name
    strategy_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)  # decisions made for the user (saved as comments)
    # what the run measured once the plan was settled (the temperature fitted, how the time budget was spent)
    outcomes: list[str] = dataclasses.field(default_factory=list)
    settled: Any = None  # the frozen Plan (training/plan.py), once every decision is made
    started: float = dataclasses.field(default_factory=time.monotonic)  # when the run began (for time_budget)
    # Given through the Python API, never saved: splits already in memory, and the caller's TrainerCallbacks.
    inputs: dict[str, Any] = dataclasses.field(default_factory=dict)
    callbacks: list[Any] = dataclasses.field(default_factory=list)
    # Where each option's value came from (a flag, the recipe, a task's default, a choice for this run …) and, for
    # the values hftransfer chose while settling the run, why: what --dry_run prints.
    sources: dict[str, str] = dataclasses.field(default_factory=dict)
    reasons: dict[str, str] = dataclasses.field(default_factory=dict)

    def choose(self, option: str, value: Any, source: str, reason: str, note: bool = True) -> None:
        """Set an option the user left unset to the value hftransfer chose for this run, recording its source and
        reason (and, with ``note``, a line in the saved config's header). Refused once the plan is settled."""
        if self.settled is not None:
            raise RuntimeError(f"{option}: a choice after the plan was settled (decisions belong before training)")
        section = next(s for s in self._sections() if s is not None and hasattr(s, option))
        setattr(section, option, value)
        self.sources[option], self.reasons[option] = source, reason
        if note:
            shown = getattr(value, "value", value)  # an enum (IntervalStrategy.STEPS) as the word a user writes
            self.notes.append(f"{option}: {shown} ({reason})")

    def options_for(self, strategy) -> Any:
        """The strategy's own options (None for a strategy without any)."""
        return self.strategy_options.get(strategy.name)

    def _sections(self) -> list[Any]:
        return [self.transfer, *self.strategy_options.values(), self.data, self.model, self.task, self.training]

    def apply_suggestions(
        self,
        suggestions: dict[str, Any],
        source: str = "task's default for this checkpoint",
        reason: str = "hftransfer's default for this checkpoint and strategy",
    ) -> dict[str, Any]:
        """Set the task's checkpoint-dependent training values the user did not choose; returns those set."""
        applied = {k: v for k, v in suggestions.items() if k not in self.explicit}
        for key, value in applied.items():
            self.choose(key, value, source, reason, note=False)
        return applied

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """A YAML-ready view, grouped in the same sections a recipe may use; no secrets."""
        training = {
            k: v
            for k, v in self.training.to_dict().items()
            if k not in _UNSAVED_FIELDS and not k.startswith("_") and (k not in _MACHINE_FIELDS or k in self.explicit)
        }
        task_options = dataclasses.asdict(self.task) if self.task is not None else {}
        strategy_options = {
            k: v for options in self._saved_strategy_options() for k, v in dataclasses.asdict(options).items()
        }
        return {
            "model": dataclasses.asdict(self.model),
            "data": {**dataclasses.asdict(self.data), **task_options},
            "transfer": {**dataclasses.asdict(self.transfer), **strategy_options},
            "training": training,
        }

    def _saved_strategy_options(self) -> list[Any]:
        """The options of the strategy that runs (a settled ``auto`` names it): another strategy's options would
        change nothing, and repeating the run from its saved config would warn that they are ignored. Before auto
        has chosen, every strategy's."""
        if get_strategy(self.transfer.strategy).choose is not None:  # it picks another strategy from the data
            return list(self.strategy_options.values())
        own = self.strategy_options.get(self.transfer.strategy)
        return [own] if own is not None else []

    def resolved_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def all_notes(self) -> list[str]:
        """The decisions' notes, then what the run measured: what the saved config, the card and the summary say."""
        notes = list(self.settled.notes) if self.settled is not None else list(self.notes)
        return notes + self.outcomes

    def save(self, path: str | os.PathLike) -> None:
        """Write the fully resolved config so ``hftransfer train PATH`` repeats the run exactly: the settled plan's
        values when there is one (nothing after settling changes them; tests/e2e/test_plan.py)."""
        header = "# Resolved hftransfer config. Repeat this run with:  hftransfer train <this file>\n"
        header += "".join(f"# {note}\n" for note in self.all_notes())
        body = self.settled.resolved if self.settled is not None else self.resolved_yaml()
        write_text_atomically(path, header + body)
