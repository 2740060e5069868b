"""Prometheus figures of a psycopg connection pool, read from ``pool.get_stats()`` at scrape time.

A component that owns a pool (:class:`tradeflow_db.Database`, a service's own store) exposes them
through ``register_metrics(registry)``, which the service app factory calls for every component;
it calls :func:`register_pool`, which keeps one collector per registry for all of its pools.
The families are described even before the pool opens (no samples then), so the names a service
exports can be listed without a database (the dashboards' test does).
"""

from __future__ import annotations

import threading
import weakref
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


PoolGetter = Callable[[], AsyncConnectionPool | None]


class PoolMetrics(Collector):
    """The figures of each registered pool (``get_pool()`` is None while closed), labelled ``pool=<name>``."""

    def __init__(self) -> None:
        self._pools: dict[str, PoolGetter] = {}

    def add(self, name: str, get_pool: PoolGetter) -> None:
        if name in self._pools:
            raise ValueError(f"a database pool named {name!r} is already measured on this registry")
        self._pools[name] = get_pool

    def describe(self) -> list[Metric]:
        return list(self._families({}))

    def collect(self) -> Iterator[Metric]:
        stats = {}
        for name, get_pool in self._pools.items():
            pool = get_pool()
            if pool is not None:
                stats[name] = pool.get_stats()
        yield from self._families(stats)

    @staticmethod
    def _families(stats_by_pool: dict[str, dict[str, int]]) -> Iterator[Metric]:
        for name, kind, documentation, key in POOL_FIGURES:
            family_type = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            family = family_type(name, documentation, labels=("pool",))
            for pool, stats in stats_by_pool.items():
                family.add_metric((pool,), float(stats.get(key, 0)))
            yield family


_collectors: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_collectors_lock = threading.Lock()


def register_pool(registry, name: str, get_pool: PoolGetter) -> None:
    """Measure the pool ``get_pool()`` returns on ``registry`` as ``pool=<name>``."""
    with _collectors_lock:
        collector = _collectors.get(registry)
        if collector is None:
            collector = _collectors[registry] = PoolMetrics()
            registry.register(collector)
        collector.add(name, get_pool)
