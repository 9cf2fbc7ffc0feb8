"""One registry pattern for tasks and strategies: a named record per entry, registered by a call or by a plug-in.

Built-in records register when their package is imported (``tasks/__init__.py``, ``strategies/__init__.py``).
Another package adds its own in one of two ways, neither touching hftransfer's code:

- in Python, ``hftransfer.register_strategy(record)`` / ``hftransfer.register_task(record)`` before the run;
- for the command line too, an entry point in its ``pyproject.toml``, loaded on the first look-up::

      [project.entry-points."hftransfer.strategies"]
      bitfit = "my_package.bitfit:STRATEGY"

  The entry point names the record itself (or a callable returning it); it is registered under its own name.

Entry points are the discovery mechanism of pytest plug-ins and of ``datasets``' and ``accelerate``'s commands; a
broken plug-in is reported with its name and does not hide the built-in records.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Callable, Generic, Iterator, Protocol, TypeVar

from hftransfer.errors import HftransferError

logger = logging.getLogger("hftransfer")


class Named(Protocol):
    @property
    def name(self) -> str: ...


RecordT = TypeVar("RecordT", bound=Named)


class Registry(Generic[RecordT]):
    """Records by name, in registration order, plus the plug-ins of ``group`` (loaded once, on first use)."""

    def __init__(
        self,
        kind: str,
        group: str,
        unknown: Callable[[str], HftransferError],
        check: Callable[[RecordT, list[RecordT]], None] | None = None,
    ):
        """``unknown``: the error an unknown name raises; ``check(record, registered)`` refuses a record that
        conflicts with the registered ones (raising ``ValueError``)."""
        self.kind, self.group, self._unknown, self._check = kind, group, unknown, check
        self._records: dict[str, RecordT] = {}
        self._plugins_loaded = False

    def register(self, record: RecordT) -> RecordT:
        """Add ``record`` under ``record.name``; a second record of the same name is a programming error."""
        if record.name in self._records:
            if self._records[record.name] is record:
                return record
            raise ValueError(f"{self.kind} {record.name!r} is already registered")
        if self._check is not None:
            self._check(record, list(self._records.values()))
        self._records[record.name] = record
        return record

    def unregister(self, name: str) -> None:
        self._records.pop(name, None)

    def get(self, name: str) -> RecordT:
        """The record named ``name``; an unknown name raises the registry's error, listing the valid ones."""
        self._load_plugins()
        try:
            return self._records[name]
        except KeyError:
            plural = self.kind[:-1] + "ies" if self.kind.endswith("y") else self.kind + "s"
            raise self._unknown(
                f"unknown {self.kind} {name!r}; valid {plural}: {', '.join(self._records) or '(none registered)'}"
            ) from None

    def records(self) -> list[RecordT]:
        self._load_plugins()
        return list(self._records.values())

    def __iter__(self) -> Iterator[str]:
        return iter([record.name for record in self.records()])

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._records

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for point in entry_points(group=self.group):
            try:
                loaded = point.load()
                record = loaded() if callable(loaded) and not hasattr(loaded, "name") else loaded
                self.register(record)
            except Exception as err:  # a broken plug-in must not take the built-in records down with it
                logger.warning(
                    "%s plug-in %r (%s) was not loaded: %s: %s",
                    self.kind,
                    point.name,
                    point.value,
                    type(err).__name__,
                    err,
                )
