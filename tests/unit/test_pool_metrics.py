"""tradeflow_db.pool_metrics: one collector per registry, every pool labelled by its name."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from psycopg_pool import AsyncConnectionPool
from tradeflow_db import Database
from tradeflow_db.pool_metrics import POOL_FIGURES, register_pool


async def test_pools_are_measured_by_name_and_described_before_they_open() -> None:
    registry = CollectorRegistry(auto_describe=True)
    database = Database("postgresql://tradeflow@127.0.0.1:1/tradeflow", name="risk", max_connections=7)
    database.register_metrics(registry)  # not started: described, no samples
    assert {f.name for f in registry.collect()} == {name for name, *_ in POOL_FIGURES}
    assert "tradeflow_db_pool_max_connections{" not in generate_latest(registry).decode()

    pool = AsyncConnectionPool("postgresql://tradeflow@127.0.0.1:1/tradeflow", min_size=1, max_size=3, open=False)
    register_pool(registry, "candle-store", lambda: pool)
    text = generate_latest(registry).decode()
    assert 'tradeflow_db_pool_max_connections{pool="candle-store"} 3.0' in text
    assert 'tradeflow_db_pool_available_connections{pool="candle-store"} 0.0' in text
    assert 'tradeflow_db_pool_request_errors_total{pool="candle-store"} 0.0' in text
    assert 'pool="risk"' not in text  # its pool is not open

    with pytest.raises(ValueError, match="already measured"):
        register_pool(registry, "candle-store", lambda: pool)
    # Another registry (another service in the same process) has its own collector.
    other = CollectorRegistry(auto_describe=True)
    register_pool(other, "candle-store", lambda: None)
    assert "candle-store" not in generate_latest(other).decode()
