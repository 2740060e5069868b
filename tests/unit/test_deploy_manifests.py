"""Offline checks of what ships to operators: the Dockerfile, docker-compose.yml and deploy/k8s/base.

No Docker engine or cluster is needed: Kubernetes manifests are validated against the schemas
bundled with kubernetes-validate (strict: unknown fields are errors), and the rest are the
properties an operator relies on (ports of shared/design.md, probes on /healthz and /readyz,
limits, non-root, secrets only by reference, settings that pass the services' own validation).
Healthcheck one-liners are executed against a real local HTTP server.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import entry_points
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from tradeflow.settings import ServiceSettings, environment_variables, load_settings
from tradeflow.topics import (
    INGEST_SUBSCRIPTIONS,
    MD_CANDLES,
    MD_TICKS,
    OPS_ALERTS,
    RISK_ORDERS,
    STRATEGY_SIGNALS,
    TopicSpec,
)

from tests.k8s_crds import crd_errors, is_custom

REPO = Path(__file__).resolve().parents[2]
K8S_DIR = REPO / "deploy" / "k8s" / "base"
JOBS_DIR = REPO / "deploy" / "k8s" / "jobs"
COMPOSE_FILE = REPO / "docker-compose.yml"
# A recent Kubernetes whose schemas ship with kubernetes-validate.
KUBERNETES_VERSION = "1.33.0"

# shared/design.md: the default REST port of each service.
DESIGN_PORTS = {"ingest": 8001, "candle-builder": 8002, "strategy": 8003, "risk": 8004, "execution": 8005, "notifier": 8006}
# The topic each service consumes through a consumer group (bounds its replicas).
# The topic whose consumer group divides the work of a service (ingest: its subscriptions, ADR 0009).
# The notifier reads four topics in one group; ops.alerts.v1 has the fewest partitions (3).
CONSUMED_TOPIC: dict[str, TopicSpec | None] = {"ingest": INGEST_SUBSCRIPTIONS, "candle-builder": MD_TICKS,
                                               "strategy": MD_CANDLES,
                                               "risk": STRATEGY_SIGNALS, "execution": RISK_ORDERS,
                                               "notifier": OPS_ALERTS}
# Services with tables: they migrate (initContainer, compose's migrate job) before they start.
SERVICES_WITH_TABLES = ("candle-builder", "strategy", "risk", "execution", "notifier")
DATABASE_SECRET = ("tradeflow-db", "database-url")
API_KEYS_SECRET = ("tradeflow-api-keys", "api-keys")
A_DATABASE_URL = "postgresql://tradeflow:pw@db.example.internal:5432/tradeflow"
AN_API_KEY = "k8s-test-key-0123456789abcdef"


# --- helpers -------------------------------------------------------------------------------

def k8s_manifest_files() -> list[Path]:
    return sorted(p for p in K8S_DIR.rglob("*.yaml") if p.name != "kustomization.yaml")


def k8s_docs() -> list[dict]:
    return [doc for path in k8s_manifest_files() for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_object(kind: str, name: str) -> dict:
    found = [d for d in k8s_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name!r} in deploy/k8s, found {len(found)}"
    return found[0]


def pod_spec(service: str) -> dict:
    return k8s_object("Deployment", service)["spec"]["template"]["spec"]


def main_container(service: str) -> dict:
    (container,) = [c for c in pod_spec(service)["containers"] if c["name"] == service]
    return container


def resolve_port(container: dict, port: int | str) -> int:
    if isinstance(port, int):
        return port
    (match,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return match


def memory_bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    number, unit = re.fullmatch(r"(\d+)([KMG]i?)?", quantity).groups()
    return int(number) * units.get(unit or "", 1)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, args = line.strip().partition(" ")
            result.append((instruction.upper(), args.strip()))
    return result


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction, args in dockerfile_instructions():
        if instruction == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction, args))
    return stages


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def interpolate(value: str, env: dict[str, str]) -> str:
    """docker compose's ${VAR}, ${VAR:-default} and ${VAR:?error} substitution."""

    def substitute(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise ValueError(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", substitute, value)


def service_settings_type(service: str) -> type[ServiceSettings]:
    (entry,) = [ep for ep in entry_points(group="tradeflow.services") if ep.name == service]
    return entry.load().settings_type


@contextmanager
def http_server(status: int) -> Iterator[tuple[int, list[str]]]:
    """A loopback HTTP server answering every GET with `status`; yields (port, requested paths)."""
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            paths.append(self.path)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], paths
    finally:
        server.shutdown()
        server.server_close()


def run_healthcheck(python_code: str, port: int) -> int:
    env = {"TRADEFLOW_HTTP_PORT": str(port), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", python_code], env=env, capture_output=True, timeout=30).returncode


# --- Kubernetes ----------------------------------------------------------------------------

@pytest.mark.parametrize("path", k8s_manifest_files(), ids=lambda p: str(p.relative_to(K8S_DIR)))
def test_every_manifest_is_valid_for_kubernetes_strictly(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs, f"{path.name} is empty"
    for doc in docs:
        if is_custom(doc):  # the operators' kinds: tests/unit/test_k8s_kustomize.py
            assert crd_errors(doc) == [], f"{path.name}: {doc['kind']}/{doc['metadata']['name']}"
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name}: {doc['kind']}/{doc['metadata']['name']} at "
                        f"{'.'.join(map(str, exc.absolute_path))}: {exc.message}")


def test_kustomization_applies_exactly_the_manifests_in_the_directory() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(str(p.relative_to(K8S_DIR)) for p in k8s_manifest_files())
    assert kustomization["namespace"] == k8s_object("Namespace", "tradeflow")["metadata"]["name"]
    images = {i["name"] for i in kustomization["images"]}
    assert images == {f"tradeflow/{service}" for service in DESIGN_PORTS} | {"tradeflow/tools"}


# The rendered base and overlays (kustomize, the operators' resources): tests/unit/test_k8s_kustomize.py.


@pytest.mark.parametrize("service", DESIGN_PORTS)
def test_probes_and_service_use_the_design_port(service: str) -> None:
    container = main_container(service)
    port = DESIGN_PORTS[service]
    assert [p["containerPort"] for p in container["ports"]] == [port]
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["startupProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    for kind, probe in probes.items():
        assert resolve_port(container, probe["port"]) == port, kind
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TRADEFLOW_HTTP_PORT"] == str(port)

    svc = k8s_object("Service", service)["spec"]
    (svc_port,) = svc["ports"]
    assert svc_port["port"] == port
    assert resolve_port(container, svc_port["targetPort"]) == port
    pod_labels = k8s_object("Deployment", service)["spec"]["template"]["metadata"]["labels"]
    assert svc["selector"].items() <= pod_labels.items()

    annotations = k8s_object("Deployment", service)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("service", DESIGN_PORTS)
def test_design_port_is_the_services_own_default(service: str) -> None:
    (entry,) = [ep for ep in entry_points(group="tradeflow.services") if ep.name == service]
    assert entry.load().default_port == DESIGN_PORTS[service]


@pytest.mark.parametrize("service", DESIGN_PORTS)
def test_every_container_has_requests_limits_and_a_locked_down_security_context(service: str) -> None:
    spec = pod_spec(service)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    for container in spec["containers"] + spec.get("initContainers", []):
        name = container["name"]
        for section in ("requests", "limits"):
            assert {"cpu", "memory"} <= container["resources"][section].keys(), f"{name} {section}"
        limits, requests = container["resources"]["limits"], container["resources"]["requests"]
        assert memory_bytes(requests["memory"]) <= memory_bytes(limits["memory"]), name
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["capabilities"]["drop"] == ["ALL"], name
        # The read-only root needs a writable /tmp (the images' HOME and working directory).
        assert "/tmp" in [m["mountPath"] for m in container["volumeMounts"]], name


def test_candle_builder_memory_is_capped_at_512mi() -> None:
    assert main_container("candle-builder")["resources"]["limits"]["memory"] == "512Mi"


@pytest.mark.parametrize("service", DESIGN_PORTS)
def test_pods_run_as_the_images_user(service: str) -> None:
    (user,) = [args for instr, args in dockerfile_stages()[-1] if instr == "USER"]
    uid, _, gid = user.partition(":")
    security = pod_spec(service)["securityContext"]
    assert security["runAsUser"] == int(uid)
    assert security["runAsGroup"] == int(gid)


@pytest.mark.parametrize("service", DESIGN_PORTS)
def test_grace_period_outlasts_the_services_shutdown(service: str) -> None:
    config = k8s_object("ConfigMap", "tradeflow-config")["data"]
    shutdown_s = float(config.get("TRADEFLOW_SHUTDOWN_TIMEOUT_S",
                                  ServiceSettings.model_fields["shutdown_timeout_s"].default))
    pre_stop = main_container(service).get("lifecycle", {}).get("preStop", {})
    pre_stop_s = int(pre_stop["exec"]["command"][1]) if "exec" in pre_stop else 0
    assert pod_spec(service)["terminationGracePeriodSeconds"] > shutdown_s + pre_stop_s


@pytest.mark.parametrize("service", DESIGN_PORTS)
def test_replicas_fit_the_partitions_of_the_consumed_topic(service: str) -> None:
    deployment = k8s_object("Deployment", service)
    topic = CONSUMED_TOPIC[service]
    if topic is None:
        # A publisher without a consumer group: more replicas would publish every trade twice.
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
    else:
        assert 1 <= deployment["spec"]["replicas"] <= topic.partitions


@pytest.mark.parametrize("service", DESIGN_PORTS)
def test_disruption_budget_covers_the_pods_and_never_blocks_drains(service: str) -> None:
    pdb = k8s_object("PodDisruptionBudget", service)["spec"]
    pod_labels = k8s_object("Deployment", service)["spec"]["template"]["metadata"]["labels"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["maxUnavailable"] == 1


@pytest.mark.parametrize("service", DESIGN_PORTS)
def test_images_and_database_secret_reference(service: str) -> None:
    spec = pod_spec(service)
    for container in spec["containers"] + spec.get("initContainers", []):
        image, _, tag = container["image"].rpartition(":")
        # Migrations run from the tools image (one chain across every service's revisions).
        expected = "tradeflow/tools" if container["name"] == "migrate" else f"tradeflow/{service}"
        assert image == expected and tag, container["image"]
        env = {e["name"]: e for e in container["env"]}
        secret_ref = env["TRADEFLOW_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert (secret_ref["name"], secret_ref["key"]) == DATABASE_SECRET
        assert [s["configMapRef"]["name"] for s in container["envFrom"]] == ["tradeflow-config"]


@pytest.mark.parametrize("service", DESIGN_PORTS)
def test_api_keys_come_from_their_secret(service: str) -> None:
    """design.md: state-changing requests need an API key; production refuses to start without one."""
    env = {e["name"]: e for e in main_container(service)["env"]}
    secret_ref = env["TRADEFLOW_API_KEYS"]["valueFrom"]["secretKeyRef"]
    assert (secret_ref["name"], secret_ref["key"]) == API_KEYS_SECRET
    assert not secret_ref.get("optional", False)


@pytest.mark.parametrize("service", SERVICES_WITH_TABLES)
def test_services_with_tables_migrate_before_they_start(service: str) -> None:
    spec = pod_spec(service)
    (init,) = spec["initContainers"]
    assert init["command"] == ["tradeflow", "db", "upgrade"]
    assert init["image"].rpartition(":")[0] == "tradeflow/tools"
    assert init["image"].rpartition(":")[2] == main_container(service)["image"].rpartition(":")[2]


def test_notifier_secrets_come_from_a_secret_only() -> None:
    env = {e["name"]: e for e in main_container("notifier")["env"]}
    for name, key in (("TRADEFLOW_NOTIFIER_CHANNELS", "channels.json"), ("TRADEFLOW_NOTIFIER_ROUTES", "routes.json"),
                      ("TRADEFLOW_NOTIFIER_SECRET_KEY", "secret-key")):
        reference = env[name]["valueFrom"]["secretKeyRef"]
        assert (reference["name"], reference["key"]) == ("tradeflow-notifier", key)
        assert "value" not in env[name]


def test_risk_reads_trading_hours_from_the_candle_builder_service() -> None:
    env = {e["name"]: e for e in main_container("risk")["env"]}
    url = env["TRADEFLOW_RISK_INSTRUMENTS_URL"]["value"]
    (port,) = k8s_object("Service", "candle-builder")["spec"]["ports"]
    assert url == f"http://candle-builder:{port['port']}"
    assert env["TRADEFLOW_EXCHANGES"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert env["TRADEFLOW_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    compose_env = compose()["services"]["risk"]["environment"]
    assert compose_env["TRADEFLOW_RISK_INSTRUMENTS_URL"] == "http://candle-builder:8002"


def test_execution_runs_one_pod_replaced_by_stopping_it_first() -> None:
    # Its paper broker reads every partition of md.ticks.v1 in the group of its orders (ADR 0019):
    # a second pod, even for the length of a rolling update, would take trades from the orders.
    deployment = k8s_object("Deployment", "execution")["spec"]
    assert deployment["replicas"] == 1
    assert deployment["strategy"] == {"type": "Recreate"}


def test_no_secret_values_are_committed() -> None:
    assert [d["metadata"]["name"] for d in k8s_docs() if d["kind"] == "Secret"] == []
    config = k8s_object("ConfigMap", "tradeflow-config")["data"]
    assert not [k for k in config if re.search(r"PASSWORD|DATABASE_URL|SECRET|TOKEN", k)]


@pytest.mark.parametrize("service", DESIGN_PORTS)
def test_production_configuration_passes_the_services_validation(service: str, monkeypatch) -> None:
    """The ConfigMap plus the Secret's URL is a configuration the service accepts at start."""
    settings_type = service_settings_type(service)
    config = k8s_object("ConfigMap", "tradeflow-config")["data"]
    env = dict(config)
    env.update({e["name"]: e["value"] for e in main_container(service)["env"] if "value" in e})
    env["TRADEFLOW_DATABASE_URL"] = A_DATABASE_URL
    env["TRADEFLOW_API_KEYS"] = AN_API_KEY  # from the Secret tradeflow-api-keys
    known = set(environment_variables(settings_type).values())
    assert set(env) - known == set(), "settings the service does not have (typo?)"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(settings_type)
    assert settings.environment == "production"
    assert [key.get_secret_value() for key in settings.configured_api_keys()] == [AN_API_KEY]
    assert settings.kafka_idempotent_producer is True
    assert settings.http_port == DESIGN_PORTS[service]


# --- Dockerfiles ---------------------------------------------------------------------------

def dockerfile_build_script() -> str:
    """The builder stage's RUN lines that install the packages and write the entry point."""
    builder = dockerfile_stages()[0]
    return "\n".join(a for i, a in builder if i == "RUN")


def run_entrypoint_writer(service: str, tmp_path: Path) -> str:
    """Run the Dockerfile's entry-point writer for ``service`` (pip replaced) and return the script."""
    script = dockerfile_build_script()
    install = script[script.index("pip wheel"):]
    writer = install[install.index('if [ "${SERVICE}" = "tools" ]; then entry='):]
    writer = writer.replace("/opt/venv/bin/", f"{tmp_path}/")
    subprocess.run(["sh", "-c", writer], env={"SERVICE": service, "PATH": "/usr/bin:/bin"}, check=True)
    return (tmp_path / "tradeflow-entrypoint").read_text()


def test_dockerfile_builds_one_image_per_service_from_the_libs_it_needs() -> None:
    instructions = dockerfile_instructions()
    args = dict(a.split("=", 1) for i, a in instructions if i == "ARG" and "=" in a)
    stages = dockerfile_stages()
    assert len(stages) == 2, "multi-stage: a builder and a runtime"
    builder, runtime = stages
    for stage in stages:
        base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], stage[0][1].split()[0])
        assert base == "python:3.11-slim"
    assert ("ARG", "SERVICE") in builder
    copies = [a for i, a in builder if i == "COPY"]
    assert {"libs/ /src/libs/", "services/ /src/services/"} <= set(copies)
    script = dockerfile_build_script()
    # The libs become local wheels; pip installs the service and only the libs it depends on.
    assert "pip wheel --no-deps --wheel-dir /wheels /src/libs/*" in script
    assert 'pip install --find-links /wheels "/src/services/${SERVICE}"' in script

    runtime_instr = {i: a for i, a in runtime if i not in {"COPY", "ENV", "RUN"}}
    assert "--from=builder /opt/venv /opt/venv" in [a for i, a in runtime if i == "COPY"]
    assert not [a for i, a in runtime if i == "COPY" and "--from=builder" not in a], "runtime copies only the venv"
    uid = runtime_instr["USER"].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root user (runAsNonRoot can verify it)"
    assert json.loads(runtime_instr["ENTRYPOINT"]) == ["tradeflow-entrypoint"]


@pytest.mark.parametrize("service", DESIGN_PORTS)
def test_service_image_entry_point_runs_the_service(service: str, tmp_path: Path) -> None:
    entry = run_entrypoint_writer(service, tmp_path)
    assert entry.splitlines()[-1] == f"exec tradeflow-service {service}"
    assert service in {ep.name for ep in entry_points(group="tradeflow.services")}
    # The console script the entry point calls is the core's, present in every service image.
    assert "tradeflow-service" in {ep.name for ep in entry_points(group="console_scripts")}


def test_tools_image_entry_point_is_the_operator_command(tmp_path: Path) -> None:
    entry = run_entrypoint_writer("tools", tmp_path)
    assert entry.splitlines()[-1] == 'exec tradeflow "$@"'
    # The operator command, every service, and the research commands (ADR 0021).
    assert "pip install --find-links /wheels /src/libs/ops /src/libs/backtest /src/services/*" in dockerfile_build_script()


@pytest.mark.parametrize("service", DESIGN_PORTS)
def test_dockerfile_healthcheck_reports_the_healthz_answer(service: str) -> None:
    (healthcheck,) = [a for i, a in dockerfile_stages()[-1] if i == "HEALTHCHECK"]
    command = json.loads(healthcheck[healthcheck.index("CMD ") + 4:])
    assert command[:2] == ["python", "-c"]
    code = command[2]
    with http_server(200) as (port, paths):
        assert run_healthcheck(code, port) == 0
    assert paths == ["/healthz"]
    with http_server(503) as (port, _):
        assert run_healthcheck(code, port) != 0


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    patterns = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "**/*.egg-info", "**/__pycache__"} <= patterns
    assert not patterns & {"libs", "libs/", "services", "services/"}


# --- docker compose ------------------------------------------------------------------------

# The TimescaleDB lines checked for PostgreSQL 15.20+: releases before these fail every background
# job there (TimescaleDB #11015, fixed in 2.27.3 and 2.28.4; see docs/adr/0011). Another line
# needs its own check (and an entry here) first.
FIRST_FIXED_ON_PG_15_20 = {(2, 27): (2, 27, 3), (2, 28): (2, 28, 4)}


def test_the_database_image_is_a_named_pairing_that_runs_background_jobs() -> None:
    image = compose()["services"]["timescaledb"]["image"]
    found = re.fullmatch(r"timescale/timescaledb-ha:pg(\d+)\.(\d+)-ts(\d+)\.(\d+)\.(\d+)", image)
    assert found, f"{image}: pin PostgreSQL major.minor and the TimescaleDB version, e.g. pg15.20-ts2.28.5"
    pg_major, pg_minor, *ts = (int(part) for part in found.groups())
    assert pg_major == 15  # the design's PostgreSQL
    if pg_minor >= 20:
        first_fixed = FIRST_FIXED_ON_PG_15_20.get(tuple(ts[:2]))
        assert first_fixed is not None and tuple(ts) >= first_fixed, (
            f"{image}: not a pairing known to run background jobs on PostgreSQL 15.20+")
    # Kubernetes runs the same image (base/timescaledb), and its README names it.
    assert f"`{image}`" in (REPO / "deploy" / "k8s" / "README.md").read_text()
    (statefulset,) = [d for d in k8s_docs() if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "timescaledb"]
    assert statefulset["spec"]["template"]["spec"]["containers"][0]["image"] == image

def test_compose_waits_for_healthy_dependencies_and_finished_one_shots() -> None:
    services = compose()["services"]
    assert {"kafka", "timescaledb", "migrate", "topics", *DESIGN_PORTS} <= services.keys()
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "kafka-broker-api-versions.sh" in " ".join(services["kafka"]["healthcheck"]["test"])
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb-ha:pg15.")
    assert "pg_isready" in services["timescaledb"]["healthcheck"]["test"]

    one_shots = {name for name, s in services.items() if s.get("restart") == "no"}
    assert one_shots == {"migrate", "topics"}
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dependency in one_shots else "service_healthy"
            assert condition["condition"] == expected, f"{name} -> {dependency}"
            if expected == "service_healthy":
                assert "test" in services[dependency]["healthcheck"], dependency
    for service in SERVICES_WITH_TABLES:
        assert services[service]["depends_on"].keys() >= {"migrate", "topics", "kafka", "timescaledb"}
    assert services["ingest"]["depends_on"].keys() >= {"topics", "kafka"}
    assert services["risk"]["depends_on"].keys() >= {"migrate", "topics", "kafka", "timescaledb"}
    assert services["migrate"]["entrypoint"] + services["migrate"]["command"] == ["tradeflow", "db", "upgrade"]
    compile(services["topics"]["command"][0], "compose topics command", "exec")


def test_compose_database_password_has_no_default() -> None:
    services = compose()["services"]
    password = services["timescaledb"]["environment"]["POSTGRES_PASSWORD"]
    assert password == "${TRADEFLOW_DB_PASSWORD:?set TRADEFLOW_DB_PASSWORD}"
    with pytest.raises(ValueError, match="set TRADEFLOW_DB_PASSWORD"):
        interpolate(password, {})
    url = services["candle-builder"]["environment"]["TRADEFLOW_DATABASE_URL"]
    assert "${TRADEFLOW_DB_PASSWORD:?" in url


@pytest.mark.parametrize("service", DESIGN_PORTS)
def test_compose_service_image_port_and_settings(service: str, monkeypatch) -> None:
    definition = compose()["services"][service]
    port = DESIGN_PORTS[service]
    assert definition["build"]["context"] == "."
    assert (REPO / definition["build"]["dockerfile"]) == REPO / "Dockerfile"
    assert definition["build"]["args"] == {"SERVICE": service}
    assert definition["image"].split(":")[0] == f"tradeflow/{service}"
    assert definition["ports"] == [f"127.0.0.1:{port}:{port}"]

    host_env = {"TRADEFLOW_DB_PASSWORD": "pw", "TRADEFLOW_API_KEYS": AN_API_KEY}
    env = {k: interpolate(str(v), host_env) for k, v in definition["environment"].items()}
    assert env["TRADEFLOW_HTTP_PORT"] == str(port)
    with pytest.raises(ValueError, match="set TRADEFLOW_API_KEYS"):  # no service without keys
        interpolate(str(definition["environment"]["TRADEFLOW_API_KEYS"]), {})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(service_settings_type(service))
    assert [key.get_secret_value() for key in settings.configured_api_keys()] == [AN_API_KEY]
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.libpq_url == "postgresql://tradeflow:pw@timescaledb:5432/tradeflow"
    assert settings.kafka_idempotent_producer is True


@pytest.mark.parametrize("service", DESIGN_PORTS)
def test_compose_healthcheck_reports_readiness(service: str) -> None:
    test = compose()["services"][service]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    with http_server(200) as (port, paths):
        assert run_healthcheck(test[3], port) == 0
    assert paths == ["/readyz"]
    with http_server(503) as (port, _):
        assert run_healthcheck(test[3], port) != 0


def test_the_distributed_optimize_job_is_valid_and_its_arguments_parse() -> None:
    from tradeflow_ops.cli.main import build_parser

    (job,) = [d for d in yaml.safe_load_all((JOBS_DIR / "optimize-job.yaml").read_text()) if d]
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
    assert job["spec"]["parallelism"] > 1
    (container,) = job["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(container["command"][1:] + container["args"])
    assert args.command == "optimize" and args.storage == "database" and args.study  # one named study, shared
    env = {e["name"]: e for e in container["env"]}
    assert env["TRADEFLOW_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == dict(zip(("name", "key"), DATABASE_SECRET,
                                                                                   strict=True))
    assert env["TRADEFLOW_API_KEYS"]["valueFrom"]["secretKeyRef"] == dict(zip(("name", "key"), API_KEYS_SECRET,
                                                                               strict=True))
