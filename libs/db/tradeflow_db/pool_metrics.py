"""Prometheus figures of a psycopg connection pool, read from ``pool.get_stats()`` at scrape time.

A component that owns a pool (:class:`tradeflow_db.Database`, a service's own store) exposes them
through ``register_metrics(registry)``, which the service app factory calls for every component.
The families are described even before the pool opens (no samples then), so the names a service
exports can be listed without a database (the dashboards' test does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg_pool import AsyncConnectionPool

# (metric name, kind, help, key of psycopg_pool's get_stats()). Counters are named without
# `_total`: the client library adds it.
POOL_FIGURES: tuple[tuple[str, str, str, str], ...] = (
    ("tradeflow_db_pool_max_connections", "gauge", "Connections the pool may open (max_size)", "pool_max"),
    ("tradeflow_db_pool_connections", "gauge", "Connections the pool holds now, in use or idle", "pool_size"),
    ("tradeflow_db_pool_available_connections", "gauge", "Idle connections ready to hand out", "pool_available"),
    ("tradeflow_db_pool_requests_waiting", "gauge", "Requests waiting for a connection now", "requests_waiting"),
    ("tradeflow_db_pool_request_errors", "counter",
     "Requests that got no connection (timed out waiting, or the pool failed)", "requests_errors"),
    ("tradeflow_db_pool_connection_errors", "counter",
     "Failed attempts to open a connection (database unreachable, refused, auth)", "connections_errors"),
)


class PoolMetrics(Collector):
    """The figures of the pool ``get_pool()`` returns (None while closed), labelled ``pool=<name>``."""

    def __init__(self, name: str, get_pool: Callable[[], AsyncConnectionPool | None]) -> None:
        self._name = name
        self._get_pool = get_pool

    def describe(self) -> list[Metric]:
        return list(self._families({}))

    def collect(self) -> Iterator[Metric]:
        pool = self._get_pool()
        yield from self._families(pool.get_stats() if pool is not None else {})

    def _families(self, stats: dict[str, int]) -> Iterator[Metric]:
        for name, kind, documentation, key in POOL_FIGURES:
            family_type = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            family = family_type(name, documentation, labels=("pool",))
            if stats:
                family.add_metric((self._name,), float(stats.get(key, 0)))
            yield family
