"""The alert rules (deploy/prometheus/rules) and Prometheus's configuration, with promtool.

`promtool test rules` runs the rules' unit tests (deploy/prometheus/tests): series fed in,
alerts expected at given times, with their labels and annotations. promtool comes from Debian's
prometheus package (`make setup`); without it these tests fail, they never skip.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.observability import promtool, unknown_labels, unknown_metrics

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.test.yml"))
# Issue 18, item 4: what must page or warn, and the alert that does it.
REQUIRED_ALERTS = {
    "feed disconnected": "TradeflowFeedDisconnected",
    "feed stale": "TradeflowFeedStale",
    "consumer lag growing": "TradeflowConsumerLagGrowing",
    "DLQ receiving": "TradeflowDeadLetters",
    "drawdown over threshold": "TradeflowDrawdownHigh",
    "account halted": "TradeflowAccountHalted",
    "kill switch engaged": "TradeflowKillSwitchEngaged",
    "exchange errors (feeds)": "TradeflowExchangeCircuitOpen",
    "exchange errors (reconnections)": "TradeflowExchangeReconnectsFailing",
    "exchange errors (orders)": "TradeflowExchangeOutcomeUnknown",
    "database unreachable": "TradeflowDatabaseUnreachable",
    "database pool saturated": "TradeflowDatabasePoolSaturated",
    "batch write failures": "TradeflowBatchWritesFailing",
    "notifier deliveries failing": "TradeflowNotificationsFailing",
}


def rules() -> list[dict]:
    return [rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"]]


def run_promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120, cwd=PROMETHEUS)


def test_prometheus_configuration_and_rules_pass_promtool_check() -> None:
    result = run_promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    for path in RULE_FILES:  # the config loads every rule file
        assert f"rules/{path.name}" in result.stdout
    result = run_promtool("check", "rules", *(str(p) for p in RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_alert_rules_unit_tests(path: Path) -> None:
    result = run_promtool("test", "rules", str(path))
    assert result.returncode == 0, f"promtool test rules {path.name}:\n{result.stdout}{result.stderr}"
    assert "SUCCESS" in result.stdout


def test_promtool_test_fails_when_an_expectation_is_wrong(tmp_path: Path) -> None:
    """The runner notices a wrong expectation (so the passing tests above say something)."""
    tests = yaml.safe_load((PROMETHEUS / "tests" / "trading.test.yml").read_text())
    tests["rule_files"] = [str(PROMETHEUS / "rules" / "trading.yml")]
    case = next(t for t in tests["tests"] if t["alert_rule_test"][0]["alertname"] == "TradeflowKillSwitchEngaged")
    case["alert_rule_test"][0]["exp_alerts"][0]["exp_labels"]["account"] = "acc-2"
    broken = tmp_path / "broken.test.yml"
    broken.write_text(yaml.safe_dump(tests))
    result = run_promtool("test", "rules", str(broken))
    assert result.returncode != 0 and "FAILED" in result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet_and_every_rule_file_is_tested() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()  # an evaluation expecting no alert, or a case with more series than alerts
    tested_files: set[str] = set()
    for path in TEST_FILES:
        document = yaml.safe_load(path.read_text())
        tested_files |= {Path(f).name for f in document["rule_files"]}
        for case in document["tests"]:
            for check in case.get("alert_rule_test", []):
                expected = check.get("exp_alerts") or []
                (fired if expected else quiet).add(check["alertname"])
                if expected and len(case["input_series"]) > len(expected) and len({
                        s["series"].split("{")[0] for s in case["input_series"]}) == 1:
                    quiet.add(check["alertname"])  # some series of the same metric stay quiet
    assert tested_files == {p.name for p in RULE_FILES}
    alerts = {rule["alert"] for rule in rules()}
    assert alerts - fired == set(), "alerts no test sees firing"
    assert alerts - quiet == set(), "alerts no test sees staying quiet"


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_the_tests_feed_series_as_prometheus_would_scrape_them(path: Path) -> None:
    """Input series name exported metrics with the labels they have once scraped (so the
    annotations the tests expect are the ones real alerts would carry)."""
    for case in yaml.safe_load(path.read_text())["tests"]:
        for series in case["input_series"]:
            selector = series["series"]
            assert unknown_metrics(selector) == set(), selector
            assert unknown_labels(selector) == set(), selector
            assert {"job", "instance"} <= set(re.findall(r"(\w+)=", selector)), f"{selector}: a scraped series has job and instance"


def test_the_issues_alerts_exist() -> None:
    alerts = {rule["alert"] for rule in rules()}
    missing = {need: alert for need, alert in REQUIRED_ALERTS.items() if alert not in alerts}
    assert missing == {}


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_rule_reads_exported_metrics_and_says_what_is_wrong(rule: dict) -> None:
    assert unknown_metrics(rule["expr"]) == set(), rule["expr"]
    assert unknown_labels(rule["expr"]) == set(), rule["expr"]
    assert rule["labels"]["severity"] in ("critical", "warning")
    assert rule["annotations"]["summary"]
