"""The strategy catalog: packaged strategies from entry points, users' from files, reloaded live.

- Packaged strategies register under the entry-point group ``tradeflow.strategies``
  (design.md): ``sma_cross = "tradeflow_trading.strategies.sma_cross:SmaCross"``. The entry
  point's name is the catalog name.
- A user's strategies are Python files from ``TRADEFLOW_STRATEGY_PATHS`` (files or
  directories of ``*.py``, comma-separated; :class:`StrategyPathsSettings`). Every
  :class:`Strategy` subclass *defined* in a file with a ``name`` is one catalog entry.
- :meth:`StrategyCatalog.reload_changed` (the strategy service calls it periodically or on a
  file-change event) re-executes each file whose content changed. A file whose new code fails
  to load (syntax error, exception at import, a name taken by another source, no strategy)
  keeps its previous classes in the catalog and its error is reported, until a later version
  loads. A deleted file's strategies leave the catalog.

Instances already running keep the class they were built from; the service rebuilds an
instance when :meth:`StrategyCatalog.get` returns a different class for its strategy.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import logging
import sys
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import NoDecode

from tradeflow_trading.strategy.base import EventStrategy, Strategy, VectorStrategy

ENTRY_POINT_GROUP = "tradeflow.strategies"
log = logging.getLogger(__name__)


class UnknownStrategy(KeyError):
    """No strategy of that name in the catalog; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


class StrategyPathsSettings(BaseModel):
    """``TRADEFLOW_STRATEGY_PATHS``: mix into a service's settings."""

    strategy_paths: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="users' strategy files or directories of *.py, comma-separated")

    @field_validator("strategy_paths", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    name: str
    strategy: type[Strategy]
    source: str  # "entry point <value>" or the file's path
    version: str = ""  # a file's content digest (12 hex digits): changes with every reload that loads


@dataclass(slots=True)
class ReloadReport:
    """What a load or reload changed: names (re)loaded, names gone, errors by source."""

    loaded: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _File:
    digest: str
    names: list[str]


def _is_strategy(value: Any, module: str | None = None) -> bool:
    return (inspect.isclass(value) and issubclass(value, VectorStrategy | EventStrategy)
            and value not in (VectorStrategy, EventStrategy) and (module is None or value.__module__ == module))


class StrategyCatalog:
    """Every known strategy by name (see the module docstring)."""

    def __init__(self, paths: Sequence[Path | str] = (), *, group: str = ENTRY_POINT_GROUP) -> None:
        self.paths = [Path(p) for p in paths]
        self.group = group
        self._entries: dict[str, CatalogEntry] = {}
        self._files: dict[Path, _File] = {}
        self.errors: dict[str, str] = {}  # current load errors by source

    # --- reading ----------------------------------------------------------------------------------

    def get(self, name: str) -> type[Strategy]:
        try:
            return self._entries[name].strategy
        except KeyError:
            raise UnknownStrategy(f"unknown strategy {name!r}; known: {', '.join(sorted(self._entries)) or 'none'}") \
                from None

    def entries(self) -> list[CatalogEntry]:
        return [self._entries[name] for name in sorted(self._entries)]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def catalog(self) -> list[dict[str, Any]]:
        """``GET /v1/strategies/catalog``: name, description, kind and parameter schema of each."""
        return [entry.strategy.catalog_entry() | {"name": entry.name} for entry in self.entries()]

    # --- loading -----------------------------------------------------------------------------------

    def load(self) -> ReloadReport:
        """Entry points, then every file (first load; later use :meth:`reload_changed`)."""
        report = ReloadReport()
        for point in entry_points(group=self.group):
            self._load_entry_point(point, report)
        report_files = self.reload_changed()
        report.loaded += report_files.loaded
        report.removed += report_files.removed
        report.errors |= report_files.errors
        return report

    def reload_changed(self) -> ReloadReport:
        """Re-execute the files whose content changed since they were last read; drop deleted ones."""
        report = ReloadReport()
        present = set()
        for path in self._strategy_files():
            present.add(path)
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError as exc:
                self._fail(str(path), f"cannot read: {exc}", report)
                continue
            known = self._files.get(path)
            if known is not None and known.digest == digest:
                continue
            self._load_file(path, digest, report)
        for path in set(self._files) - present:
            for name in self._files.pop(path).names:
                self._entries.pop(name, None)
                report.removed.append(name)
            self.errors.pop(str(path), None)
        return report

    def _strategy_files(self) -> list[Path]:
        files: list[Path] = []
        for path in self.paths:
            if path.is_dir():
                files.extend(sorted(p for p in path.glob("*.py") if not p.name.startswith(("_", "."))))
            elif path.suffix == ".py" and path.exists():
                files.append(path)
        return files

    def _load_entry_point(self, point: EntryPoint, report: ReloadReport) -> None:
        source = f"entry point {point.name} = {point.value}"
        try:
            strategy = point.load()
        except Exception as exc:  # a broken plugin must not take the catalog down
            self._fail(source, _describe(exc), report)
            return
        if not _is_strategy(strategy):
            self._fail(source, f"{point.value} is not a VectorStrategy or EventStrategy subclass", report)
            return
        if point.name in self._entries:
            self._fail(source, f"name {point.name!r} is already provided by {self._entries[point.name].source}", report)
            return
        self._entries[point.name] = CatalogEntry(point.name, strategy, source)
        report.loaded.append(point.name)

    def _load_file(self, path: Path, digest: str, report: ReloadReport) -> None:
        source = str(path)
        try:
            module = _execute(path, digest)
            found = _strategies_in(module)
        except Exception as exc:
            self._fail(source, _describe(exc), report)
            return
        if not found:
            self._fail(source, "defines no strategy (a VectorStrategy or EventStrategy subclass with a name)", report)
            return
        old = self._files.get(path)
        own = set(old.names) if old else set()
        taken = [n for n in found if n in self._entries and n not in own]
        if taken:
            others = ", ".join(f"{n!r} ({self._entries[n].source})" for n in taken)
            self._fail(source, f"strategy names already provided elsewhere: {others}", report)
            return
        for name in own - set(found):
            self._entries.pop(name, None)
            report.removed.append(name)
        for name, strategy in found.items():
            self._entries[name] = CatalogEntry(name, strategy, source, digest[:12])
            report.loaded.append(name)
        self._files[path] = _File(digest, sorted(found))
        self.errors.pop(source, None)

    def _fail(self, source: str, message: str, report: ReloadReport) -> None:
        log.warning("strategy source %s not loaded: %s", source, message)
        self.errors[source] = message
        report.errors[source] = message


def _execute(path: Path, digest: str) -> ModuleType:
    """Run a user file as a fresh module (named by its content, so versions never mix)."""
    module_name = f"tradeflow_user_strategies.{path.stem}_{digest[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _strategies_in(module: ModuleType) -> dict[str, type[Strategy]]:
    found: dict[str, type[Strategy]] = {}
    for value in vars(module).values():
        if _is_strategy(value, module.__name__):
            if not value.name:
                raise ValueError(f"strategy class {value.__name__} has no name")
            if value.name in found:
                raise ValueError(f"two strategies named {value.name!r} in one file")
            found[value.name] = value
    return found


def _describe(exc: BaseException) -> str:
    """The error and where in the user's code it happened (the last frame), in one line."""
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({Path(frames[-1].filename).name}, line {frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def load_catalog(paths: Iterable[Path | str] = ()) -> StrategyCatalog:
    """A catalog with the entry points and the files of ``paths`` loaded."""
    catalog = StrategyCatalog(list(paths))
    catalog.load()
    return catalog
