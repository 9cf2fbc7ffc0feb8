"""``--dry_run``: the settled run shown as a plan, each option with its value, where it came from and why.

By the time training would start, every value is settled: the user's (a flag, a keyword, the recipe), the task's
and hftransfer's defaults, what the machine calls for, and what hftransfer chose from the data (``auto``'s
strategy, the schedule, micro-batches …; ``RunConfig.choose`` records each with its reason). The plan lists
every option that one of them set, and the notes that go with them, in the order of the option dataclasses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from hftransfer.engine.progress import output_is_piped


@dataclass(frozen=True)
class Plan:
    """The settled run, frozen: every option's value as the saved config writes it, the rows ``--dry_run`` prints
    (option, value, source, reason) and the notes on the decisions. Made once every decision is made and before
    anything trains; the saved config, the model card and the summary are rendered from it."""

    resolved: str  # the YAML body of hftransfer_config.yaml
    rows: tuple[tuple[str, str, str, str], ...]
    notes: tuple[str, ...]


def settle(config) -> Plan:
    """Freeze the run's decisions: the config refuses further choices, and the plan records them."""
    plan = Plan(config.resolved_yaml(), tuple(plan_rows(config)), tuple(config.notes))
    config.settled = plan
    return plan


ALWAYS_SHOWN = {
    "task",
    "model",
    "timm_arch",
    "strategy",
    "output_dir",
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
}


def plan_rows(config) -> list[tuple[str, str, str, str]]:
    """(option, value, source, reason) for every option with a source, and the few every plan shows."""
    wanted = set(config.sources) | ALWAYS_SHOWN
    rows, seen = [], set()
    for section in (
        config.model,
        config.data,
        config.transfer,
        *config.strategy_options.values(),
        config.task,
        config.training,
    ):
        if section is None:
            continue
        for field in dataclasses.fields(section):
            option = field.name
            if option not in wanted or option in seen or option.startswith("_"):
                continue
            seen.add(option)
            value = getattr(section, option)
            if value is None and option not in config.sources:
                continue
            rows.append((option, _shown(value), config.sources.get(option, "default"), config.reasons.get(option, "")))
    return rows


def _shown(value) -> str:
    value = getattr(value, "value", value)  # an enum as the word a user writes
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value)) or "(none)"
    return str(value)


def print_plan(config, plan: Plan, data, console: Console | None = None) -> None:
    """The plan table, then the notes on the data and on the choices; says that nothing was trained."""
    console = console or Console(width=140 if output_is_piped() else None)  # a file gets the width of a screen
    table = Table(title=f"hftransfer plan · {config.model.task} · dry run: nothing trained or written")
    for column in ("option", "value", "source", "why"):
        table.add_column(column, overflow="fold")
    for row in plan.rows:
        table.add_row(*row)
    console.print(table)
    for note in [*data.notes, *plan.notes]:
        console.print(f"- {note}", highlight=False)
