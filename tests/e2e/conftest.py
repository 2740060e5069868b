"""Fixtures of the end-to-end tests: services as child processes (see service_process.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.service_process import candle_builder_env, running_candle_builder


@pytest.fixture
def candle_builder(service_env, unique_name, tmp_path) -> Iterator[tuple[str, Path]]:
    """A running ``tradeflow run candle-builder`` in its own consumer group: (base URL, log file)."""
    env = candle_builder_env(service_env, f"candle-builder-{unique_name}")
    with running_candle_builder(env, tmp_path / "candle-builder.log") as running:
        yield running
