"""What the dashboards and alert rules may name: the metrics the services export, and PromQL.

The exported names come from the services themselves: every installed service
(entry points ``tradeflow.services``) builds its app (nothing is started, no broker or database
is contacted) and its telemetry registry lists its metric families, with the names Prometheus
sees (a counter ``x`` is exposed as ``x_total``, a histogram as ``x_bucket``, ``x_sum``, ``x_count``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib.metadata import entry_points

import promql_parser
import pytest
from tradeflow.settings import load_settings

# Series Prometheus makes itself (not exported by a service) that a dashboard or rule may read.
PROMETHEUS_SERIES = frozenset({"up", "ALERTS"})
# Only ingest replicas with an exchange feed register the feed families (one per exchange).
INGEST_WITH_A_FEED = {"TRADEFLOW_EXCHANGES": '[{"id": "binance", "symbols": ["BTC/USDT"]}]'}
PROMTOOL_MISSING = ("promtool is not installed: `make setup` installs it (Debian's prometheus package, "
                    "scripts/install-system-deps.sh), or `apt-get install prometheus`")

_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count"),
             "summary": ("_sum", "_count"), "info": ("_info",), "stateset": ("",), "unknown": ("",)}


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@cache
def exported_metrics() -> dict[str, frozenset[str]]:
    """Every series name a service exposes on /metrics -> the services that expose it."""
    exported: dict[str, set[str]] = {}
    for entry in entry_points(group="tradeflow.services"):
        definition = entry.load()
        env = {"TRADEFLOW_ENVIRONMENT": "test", **(INGEST_WITH_A_FEED if entry.name == "ingest" else {})}
        with _environment(env):
            app = definition.create_app(load_settings(definition.settings_type))
        for family in app.state.telemetry.registry.collect():
            for suffix in _SUFFIXES[family.type]:
                exported.setdefault(family.name + suffix, set()).add(entry.name)
    assert len({s for services in exported.values() for s in services}) == 6, "the six services of design.md"
    return {name: frozenset(services) for name, services in exported.items()}


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects (parsed, not pattern-matched)."""
    names: set[str] = set()

    def visit(node) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            name = node.name or next((m.value for m in node.matchers.matchers if m.name == "__name__"), None)
            assert name, f"a selector without a metric name in {expression!r}"
            names.add(name)
        elif isinstance(node, promql_parser.MatrixSelector):
            visit(node.vector_selector)
        elif isinstance(node, promql_parser.BinaryExpr):
            visit(node.lhs)
            visit(node.rhs)
        elif isinstance(node, promql_parser.AggregateExpr):
            visit(node.expr)
            if node.param is not None:
                visit(node.param)
        elif isinstance(node, promql_parser.Call):
            for arg in node.args:
                visit(arg)
        elif isinstance(node, (promql_parser.ParenExpr, promql_parser.UnaryExpr, promql_parser.SubqueryExpr)):
            visit(node.expr)

    visit(promql_parser.parse(expression))
    return names


def unknown_metrics(expression: str) -> set[str]:
    """Names in ``expression`` that no service exports (and Prometheus does not make)."""
    return metric_names(expression) - exported_metrics().keys() - PROMETHEUS_SERIES


def promtool() -> str:
    """The promtool binary; the test fails (never skips) without it."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(PROMTOOL_MISSING)
    return path
