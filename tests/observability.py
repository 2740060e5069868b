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


# Labels Prometheus adds to every scraped series; a service's own `job` or `instance` label
# arrives renamed `exported_job` / `exported_instance` (honor_labels false, the default).
TARGET_LABELS = frozenset({"job", "instance"})
PROMETHEUS_SERIES_LABELS = {"up": frozenset(), "ALERTS": frozenset({"alertname", "alertstate", "severity"})}


@cache
def _services() -> dict[str, object]:
    """Each service's telemetry, from its app as the service builds it (nothing started)."""
    telemetries = {}
    for entry in entry_points(group="tradeflow.services"):
        definition = entry.load()
        env = {"TRADEFLOW_ENVIRONMENT": "test", **(INGEST_WITH_A_FEED if entry.name == "ingest" else {})}
        with _environment(env):
            app = definition.create_app(load_settings(definition.settings_type))
        telemetries[entry.name] = app.state.telemetry
    assert len(telemetries) == 6, "the six services of design.md"
    return telemetries


@cache
def exported_metrics() -> dict[str, frozenset[str]]:
    """Every series name a service exposes on /metrics -> the services that expose it."""
    exported: dict[str, set[str]] = {}
    for service, telemetry in _services().items():
        for family in telemetry.registry.collect():
            for suffix in _SUFFIXES[family.type]:
                exported.setdefault(family.name + suffix, set()).add(service)
    return {name: frozenset(services) for name, services in exported.items()}


@cache
def exported_labels() -> dict[str, frozenset[str]]:
    """Every exported series name -> the label names it has once Prometheus scraped it."""
    from tradeflow_db.pool_metrics import POOL_FIGURES

    own: dict[str, set[str]] = {name: {"pool"} for name, *_ in POOL_FIGURES}
    for telemetry in _services().values():
        for name, metric in telemetry._metrics.items():  # the families the services created, with their labels
            own.setdefault(name.removesuffix("_total"), set()).update(metric._labelnames)
    labels: dict[str, frozenset[str]] = {}
    for series in exported_metrics():
        base = next(series.removesuffix(suffix) for suffix in ("_total", "_bucket", "_sum", "_count", "")
                    if series.removesuffix(suffix) in own)
        names = {f"exported_{label}" if label in TARGET_LABELS else label for label in own[base]}
        labels[series] = frozenset(names | TARGET_LABELS | ({"le"} if series.endswith("_bucket") else set()))
    return {**labels, **{name: names | TARGET_LABELS for name, names in PROMETHEUS_SERIES_LABELS.items()}}


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


def unknown_labels(expression: str) -> set[str]:
    """`metric:label` for each label a selector matches on, or an aggregation groups by, that the
    metric does not have once scraped (e.g. a service's `instance` label, which arrives as
    `exported_instance`)."""
    labels = exported_labels()
    unknown: set[str] = set()

    def visit(node) -> set[str]:
        """The metrics ``node`` selects (and records unknown labels on the way)."""
        if isinstance(node, promql_parser.VectorSelector):
            name = node.name
            for matcher in node.matchers.matchers:
                if name in labels and matcher.name not in labels[name]:
                    unknown.add(f"{name}:{matcher.name}")
            return {name} if name in labels else set()
        if isinstance(node, promql_parser.MatrixSelector):
            return visit(node.vector_selector)
        if isinstance(node, promql_parser.BinaryExpr):
            return visit(node.lhs) | visit(node.rhs)
        if isinstance(node, promql_parser.AggregateExpr):
            inner = visit(node.expr) | (visit(node.param) if node.param is not None else set())
            if node.modifier is not None and str(node.modifier.type).endswith("By"):
                for label in node.modifier.labels:
                    # Grouping by `instance` where the service has its own `instance` label (now
                    # `exported_instance`) groups by the scrape target: almost surely a mistake.
                    unknown.update(f"{m}:{label}" for m in inner
                                   if label not in labels[m] or f"exported_{label}" in labels[m])
            return inner
        if isinstance(node, promql_parser.Call):
            return set().union(*(visit(arg) for arg in node.args)) if node.args else set()
        if isinstance(node, (promql_parser.ParenExpr, promql_parser.UnaryExpr, promql_parser.SubqueryExpr)):
            return visit(node.expr)
        return set()

    visit(promql_parser.parse(expression))
    return unknown


def unknown_metrics(expression: str) -> set[str]:
    """Names in ``expression`` that no service exports (and Prometheus does not make)."""
    return metric_names(expression) - exported_metrics().keys() - PROMETHEUS_SERIES


def promtool() -> str:
    """The promtool binary; the test fails (never skips) without it."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(PROMTOOL_MISSING)
    return path
