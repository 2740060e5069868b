"""The provisioned Grafana dashboards (deploy/grafana): their PromQL parses (promtool) and reads
only metrics a service exports (collected from the services' own registries, tests/observability.py).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.observability import metric_names, promtool, unknown_labels, unknown_metrics

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARDS = ("system-overview", "market-data", "trading", "infrastructure")
# Grafana's own variables, replaced by a value of their kind before the expression is parsed.
GRAFANA_VARIABLES = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
# What each dashboard is for (issue 18): the metrics it must show.
MUST_SHOW = {
    "system-overview": {"up", "tradeflow_readiness_check", "ALERTS", "tradeflow_ingest_ticks_published_total",
                        "tradeflow_candles_emitted_total", "tradeflow_strategy_signals_total",
                        "tradeflow_risk_decisions_total", "tradeflow_execution_order_transitions_total",
                        "tradeflow_notifier_deliveries_total"},
    "market-data": {"tradeflow_ingest_feed_connected", "tradeflow_ingest_feed_exchange_lag_seconds",
                    "tradeflow_ingest_feed_lag_seconds", "tradeflow_ingest_ticks_published_total",
                    "tradeflow_dead_letters_total", "tradeflow_consumer_lag"},
    "trading": {"tradeflow_risk_daily_pnl", "tradeflow_risk_equity", "tradeflow_risk_gross_exposure",
                "tradeflow_execution_open_orders", "tradeflow_execution_fills_total",
                "tradeflow_execution_slippage_bps_bucket", "tradeflow_risk_account_state",
                "tradeflow_risk_kill_switch_engaged", "tradeflow_risk_decisions_total"},
    "infrastructure": {"tradeflow_consumer_lag", "tradeflow_readiness_check", "tradeflow_db_pool_connections",
                       "tradeflow_db_pool_requests_waiting", "tradeflow_http_requests_total"},
}


def dashboard(name: str) -> dict:
    return json.loads((GRAFANA / "dashboards" / f"{name}.json").read_text())


def panels(board: dict) -> list[dict]:
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def expressions(board: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every query target of the dashboard."""
    return [(f"{panel['title']} [{target['refId']}]", target["expr"])
            for panel in panels(board) for target in panel.get("targets", [])]


def variable_metrics(board: dict) -> list[str]:
    """The metric of each `label_values(metric, label)` variable query."""
    found = []
    for variable in board["templating"]["list"]:
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
        assert match, f"variable {variable['name']}: {query}"
        found.append(match.group(1))
    return found


def concrete(expression: str, board: dict) -> str:
    """The expression as Prometheus gets it: Grafana's variables replaced by values of their kind."""
    own = {v["name"] for v in board["templating"]["list"]}

    def substitute(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name in GRAFANA_VARIABLES:
            return GRAFANA_VARIABLES[name]
        assert name in own, f"unknown variable ${name} in {expression!r}"
        return ".*"  # "All" (allValue); a dashboard variable is only used in a regex matcher

    for name in own:  # a dashboard variable only inside =~"...": its values are a regex alternation
        for found in re.finditer(rf"\$\{{?{name}\b", expression):
            assert expression[:found.start()].endswith('=~"'), f"${name} outside a =~ matcher: {expression!r}"
    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", substitute, expression)


def check_with_promtool(expressions_by_name: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    """`promtool check rules` over one recording rule per expression (the parser Prometheus runs)."""
    rules = {"groups": [{"name": "dashboard-expressions", "rules": [
        {"record": f"dashboard:expression_{i}", "expr": expr} for i, expr in enumerate(expressions_by_name.values())]}]}
    path = tmp_path / "dashboard-expressions.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


def test_the_four_dashboards_are_provisioned_from_the_directory_compose_mounts() -> None:
    assert sorted(p.stem for p in (GRAFANA / "dashboards").glob("*.json")) == sorted(DASHBOARDS)
    uids = [dashboard(name)["uid"] for name in DASHBOARDS]
    assert len(set(uids)) == len(uids)
    (provider,) = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "dashboards.yml").read_text())["providers"]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["grafana"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in compose["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in compose["volumes"]

    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "datasources.yml").read_text())
    by_uid = {d["uid"]: d for d in datasources["datasources"]}
    assert by_uid["prometheus"]["url"] == "http://prometheus:9090"
    assert by_uid["jaeger"]["url"] == "http://jaeger:16686"
    for name in DASHBOARDS:
        for panel in panels(dashboard(name)):
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] in by_uid, panel["title"]


@pytest.mark.parametrize("name", DASHBOARDS)
def test_panels_fit_the_grid_without_overlapping(name: str) -> None:
    taken: set[tuple[int, int]] = set()
    ids = [p["id"] for p in panels(dashboard(name))]
    assert len(set(ids)) == len(ids)
    for panel in panels(dashboard(name)):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


@pytest.mark.parametrize("name", DASHBOARDS)
def test_every_expression_parses_with_promtool(name: str, tmp_path: Path) -> None:
    board = dashboard(name)
    exprs = {where: concrete(expr, board) for where, expr in expressions(board)}
    assert exprs, f"{name} has no queries"
    result = check_with_promtool(exprs, tmp_path)
    assert result.returncode == 0, f"promtool check rules:\n{result.stdout}{result.stderr}"
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_promtool_refuses_a_broken_expression(tmp_path: Path) -> None:
    result = check_with_promtool({"broken": "sum(rate(tradeflow_http_requests_total[5m])"}, tmp_path)
    assert result.returncode != 0
    assert "dashboard:expression_0" in result.stdout + result.stderr or "parse error" in result.stdout + result.stderr


@pytest.mark.parametrize("name", DASHBOARDS)
def test_every_metric_a_dashboard_reads_is_exported_by_a_service(name: str) -> None:
    board = dashboard(name)
    for where, expr in expressions(board):
        assert unknown_metrics(concrete(expr, board)) == set(), f"{name}: {where}: {expr}"
        assert unknown_labels(concrete(expr, board)) == set(), f"{name}: {where}: {expr}"
    for metric in variable_metrics(board):
        assert unknown_metrics(metric) == set(), f"{name}: variable over {metric}"


@pytest.mark.parametrize("name", DASHBOARDS)
def test_dashboard_shows_what_it_is_for(name: str) -> None:
    board = dashboard(name)
    shown = set().union(*(metric_names(concrete(expr, board)) for _, expr in expressions(board)))
    assert MUST_SHOW[name] <= shown, f"missing: {sorted(MUST_SHOW[name] - shown)}"


def test_an_unknown_metric_is_reported() -> None:
    assert unknown_metrics("sum(rate(tradeflow_ticks_published_total[5m]))") == {"tradeflow_ticks_published_total"}
    assert unknown_metrics("sum(rate(tradeflow_ingest_ticks_published_total[5m])) or up") == set()


def test_an_unknown_or_shadowed_label_is_reported() -> None:
    assert unknown_labels('sum by (exchanges) (rate(tradeflow_ingest_ticks_published_total{job="ingest"}[5m]))') == {
        "tradeflow_ingest_ticks_published_total:exchanges"}
    assert unknown_labels('tradeflow_risk_equity{acount="a"}') == {"tradeflow_risk_equity:acount"}
    # The strategy's own `instance` label arrives as exported_instance; `instance` is the scrape target.
    assert unknown_labels("sum by (instance) (tradeflow_strategy_errors_total)") == {"tradeflow_strategy_errors_total:instance"}
    assert unknown_labels("sum by (exported_instance, le) (rate(tradeflow_strategy_handling_seconds_bucket[5m]))") == set()
