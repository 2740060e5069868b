"""The strategy catalog: entry points, users' files, reloading without a restart."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tradeflow.settings import CommonSettings, load_settings
from tradeflow_trading.strategies.sma_cross import SmaCross
from tradeflow_trading.strategy.loader import StrategyCatalog, StrategyPathsSettings, UnknownStrategy

MINE = '''
from tradeflow_trading.strategy import Decisions, IntParam, VectorStrategy

class Mine(VectorStrategy):
    """My strategy, version {version}."""
    name = "mine"
    period = IntParam({version}, low=1, high=100)

    def decide(self, data):
        raise NotImplementedError
'''


def write(path: Path, text: str) -> None:
    path.write_text(text)
    os.utime(path, None)


def test_packaged_strategies_come_from_entry_points():
    catalog = StrategyCatalog()
    report = catalog.load()
    assert "sma_cross" in report.loaded and report.errors == {}
    assert catalog.get("sma_cross") is SmaCross
    with pytest.raises(UnknownStrategy, match="unknown strategy 'nope'; known: bollinger_reversion, breakout"):
        catalog.get("nope")


def test_a_changed_file_is_reloaded_and_a_broken_version_keeps_the_old_class(tmp_path):
    folder = tmp_path / "strategies"
    folder.mkdir()
    write(folder / "mine.py", MINE.format(version=1))
    catalog = StrategyCatalog([folder])
    catalog.load()
    first = catalog.get("mine")
    assert first.description == "My strategy, version 1." and first.parameters["period"].default == 1
    assert catalog.reload_changed().loaded == []  # nothing changed, nothing re-executed

    write(folder / "mine.py", MINE.format(version=2))
    assert catalog.reload_changed().loaded == ["mine"]
    second = catalog.get("mine")
    assert second is not first and second.parameters["period"].default == 2

    write(folder / "mine.py", MINE.format(version=3) + "\nraise RuntimeError('no API key')\n")
    report = catalog.reload_changed()
    assert report.errors == {str(folder / "mine.py"): "RuntimeError: no API key (mine.py, line 12)"}
    assert catalog.get("mine") is second  # the old class stays in place
    assert catalog.errors == report.errors

    write(folder / "mine.py", MINE.format(version=4).replace("def decide(self, data):", "def decide(self, data)"))
    assert catalog.reload_changed().errors[str(folder / "mine.py")].startswith("SyntaxError: expected ':' (line 9)")
    assert catalog.get("mine") is second

    write(folder / "mine.py", MINE.format(version=5))
    assert catalog.reload_changed().loaded == ["mine"] and catalog.errors == {}
    assert catalog.get("mine").parameters["period"].default == 5

    (folder / "mine.py").unlink()
    assert catalog.reload_changed().removed == ["mine"]
    with pytest.raises(UnknownStrategy):
        catalog.get("mine")


def test_a_file_may_not_take_a_packaged_name_or_define_nothing(tmp_path):
    write(tmp_path / "fake.py", MINE.format(version=1).replace('"mine"', '"sma_cross"'))
    write(tmp_path / "empty.py", "X = 1\n")
    catalog = StrategyCatalog([tmp_path / "fake.py", tmp_path / "empty.py"])
    report = catalog.load()
    assert report.errors[str(tmp_path / "fake.py")].startswith("strategy names already provided elsewhere: 'sma_cross'")
    assert "defines no strategy" in report.errors[str(tmp_path / "empty.py")]
    assert catalog.get("sma_cross") is SmaCross


class PathsOnly(CommonSettings, StrategyPathsSettings):
    pass


def test_strategy_paths_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("TRADEFLOW_STRATEGY_PATHS", "/srv/strategies, /opt/more/mine.py")
    assert load_settings(PathsOnly).strategy_paths == [Path("/srv/strategies"), Path("/opt/more/mine.py")]
