"""Fixtures of the end-to-end tests: services as child processes (see service_process.py)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.service_process import ServiceProcess, free_port


@pytest.fixture
def candle_builder(service_env, unique_name, tmp_path) -> Iterator[tuple[str, Path]]:
    """A running ``tradeflow run candle-builder`` in its own consumer group: (base URL, log file).

    The scenarios' trades are months old, so tick retention is set far out (it must not drop
    them mid-test). The fixture asserts a clean stop: uvicorn re-raises SIGTERM after its
    graceful shutdown, so -15 is a clean stop too.
    """
    port = free_port()
    env = {**os.environ, **service_env,
           "TRADEFLOW_HTTP_PORT": str(port),
           "TRADEFLOW_CANDLE_BUILDER_CONSUMER_GROUP": f"candle-builder-{unique_name}",
           "TRADEFLOW_LOG_FORMAT": "text",
           "TRADEFLOW_CANDLE_BUILDER_TICK_RETENTION_DAYS": "36500"}
    service = ServiceProcess("candle-builder", env, port, tmp_path / "candle-builder.log")
    service.start()
    try:
        service.wait_ready_blocking(60)
        yield service.base, service.log
    finally:
        code = service.stop()
    assert code in (0, -signal.SIGTERM), f"candle-builder did not stop cleanly:\n{service.log_tail()}"
