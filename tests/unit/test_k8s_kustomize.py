"""deploy/k8s as kustomize renders it: the base and the dev and prod overlays, validated offline.

Rendering is tests/kustomize.py (the kustomize features these kustomizations use), checked
against `kubectl kustomize` where kubectl is installed. Core objects are validated with
kubernetes-validate (strict: unknown fields are errors); the operators' resources (Strimzi,
KEDA, Prometheus operator) against the schemas of tests/k8s_crds.py. Then what the design asks
of them: every topic with its partitions and config, scaling on the consumer groups' lag, only
the network paths of the design's diagram, secrets only by reference.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from tradeflow.admin import dlq_spec
from tradeflow.settings import load_settings
from tradeflow.topics import ALL_TOPICS, topic_by_name

from tests.k8s_crds import crd_errors, is_custom
from tests.kustomize import KustomizeError, build
from tests.observability import unknown_metrics

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
TARGETS = ("base", "overlays/dev", "overlays/prod")
KUBERNETES_VERSION = "1.33.0"
DESIGN_PORTS = {"ingest": 8001, "candle-builder": 8002, "strategy": 8003, "risk": 8004, "execution": 8005, "notifier": 8006}
SERVICES_WITH_TABLES = {"candle-builder", "strategy", "risk", "execution", "notifier"}
# The services KEDA scales on their groups' lag; execution runs one pod (ADR 0019).
SCALED = {"ingest", "candle-builder", "strategy", "risk"}
SECRET_LIKE = re.compile(r"PASSWORD|SECRET|TOKEN|DATABASE_URL|API_KEYS|EXCHANGES|CHANNELS")


@cache
def _rendered(target: str) -> tuple[dict, ...]:
    return tuple(build(K8S / target))


def render(target: str) -> list[dict]:
    return copy.deepcopy(list(_rendered(target)))


def objects(target: str, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in render(target) if o["kind"] == kind}


def one(target: str, kind: str, name: str) -> dict:
    return objects(target, kind)[name]


def pod_labels(workload: dict) -> dict[str, str]:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return workload["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict, labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        value = labels.get(expression["key"])
        if expression["operator"] == "In" and value not in expression["values"]:
            return False
        if expression["operator"] == "NotIn" and value in expression["values"]:
            return False
    return True


def service_group(service: str) -> str:
    (entry,) = [e for e in entry_points(group="tradeflow.services") if e.name == service]
    settings = load_settings(entry.load().settings_type, environment="test")
    return settings.subscriptions_group if service == "ingest" else settings.consumer_group


# --- rendering and schemas -------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed: the renderer is checked where it is")
@pytest.mark.parametrize("target", TARGETS)
def test_the_renderer_gives_what_kubectl_kustomize_gives(target: str) -> None:
    def key(o: dict) -> tuple[str, str]:
        return o["kind"], o["metadata"]["name"]

    output = subprocess.run(["kubectl", "kustomize", str(K8S / target)], capture_output=True, text=True,
                            timeout=120, check=True).stdout
    assert sorted(render(target), key=key) == sorted((d for d in yaml.safe_load_all(output) if d), key=key)


def test_the_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\ncommonAnnotations: {a: b}\n")
    with pytest.raises(KustomizeError, match="commonAnnotations"):
        build(tmp_path)


@pytest.mark.parametrize("target", TARGETS)
def test_every_object_is_valid(target: str) -> None:
    rendered = render(target)
    kinds = {o["kind"] for o in rendered}
    assert {"Deployment", "StatefulSet", "CronJob", "NetworkPolicy", "Kafka", "KafkaTopic", "ScaledObject",
            "PodMonitor", "PrometheusRule"} <= kinds
    for obj in rendered:
        where = f"{target}: {obj['kind']}/{obj['metadata']['name']}"
        if is_custom(obj):
            assert crd_errors(obj) == [], where
        else:
            try:
                kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{where} at {'.'.join(map(str, exc.absolute_path))}: {exc.message}")
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "tradeflow", where


@pytest.mark.parametrize("kind, name, mistake", [
    ("KafkaTopic", "md.ticks.v1", lambda o: o["spec"].update(partition=12)),
    ("KafkaTopic", "md.ticks.v1", lambda o: o["metadata"]["labels"].pop("strimzi.io/cluster")),
    ("ScaledObject", "strategy", lambda o: o["spec"]["triggers"][0]["metadata"].update(lagTreshold="5")),
    ("ScaledObject", "strategy", lambda o: o["spec"]["triggers"][0]["metadata"].update(lagThreshold=5)),
    ("Kafka", "tradeflow", lambda o: o["spec"]["kafka"]["listeners"][0].update(type="internel")),
    ("KafkaNodePool", "combined", lambda o: o["spec"].update(roles=["broker", "zookeeper"])),
    ("PodMonitor", "tradeflow", lambda o: o["spec"]["podMetricsEndpoints"][0].update(targetPort="http")),
])
def test_the_custom_resource_schemas_refuse_mistakes(kind: str, name: str, mistake) -> None:
    obj = copy.deepcopy(one("base", kind, name))
    assert crd_errors(obj) == []
    mistake(obj)
    assert crd_errors(obj) != []


# --- the broker and its topics ---------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_every_topic_and_dlq_is_a_kafka_topic_with_its_partitions_and_config(target: str) -> None:
    topics = objects(target, "KafkaTopic")
    expected = {s.name: s for spec in ALL_TOPICS for s in (spec, dlq_spec(spec))}
    assert topics.keys() == expected.keys()
    (pool,) = objects(target, "KafkaNodePool").values()
    kafka = one(target, "Kafka", "tradeflow")
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    for name, topic in topics.items():
        spec = expected[name]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert topic["spec"]["topicName"] == name
        assert topic["spec"]["partitions"] == spec.partitions, name
        assert spec.config.items() <= topic["spec"]["config"].items(), name
        # Writes survive a broker: fewer in-sync copies than replicas, and no more replicas than brokers.
        replicas, min_isr = topic["spec"]["replicas"], int(topic["spec"]["config"]["min.insync.replicas"])
        assert replicas <= pool["spec"]["replicas"]
        assert min_isr < replicas or replicas == 1, name
    assert topics["ingest.subscriptions.v1"]["spec"]["config"]["cleanup.policy"] == "compact"
    assert topics["md.ticks.v1.dlq"]["spec"]["config"]["retention.ms"] == dlq_spec(topic_by_name("md.ticks.v1")).config[
        "retention.ms"]
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False


def test_production_keeps_three_copies_and_dev_one() -> None:
    for target, copies in (("overlays/prod", 3), ("overlays/dev", 1)):
        assert {t["spec"]["replicas"] for t in objects(target, "KafkaTopic").values()} == {copies}
        (pool,) = objects(target, "KafkaNodePool").values()
        assert pool["spec"]["replicas"] == copies and set(pool["spec"]["roles"]) == {"controller", "broker"}
        assert one(target, "Kafka", "tradeflow")["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"


def test_services_use_the_strimzi_bootstrap_and_its_listener_admits_them() -> None:
    config = one("base", "ConfigMap", "tradeflow-config")["data"]
    kafka = one("base", "Kafka", "tradeflow")
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert config["TRADEFLOW_KAFKA_BOOTSTRAP"] == f"{kafka['metadata']['name']}-kafka-bootstrap:{listener['port']}"
    for service in DESIGN_PORTS:
        labels = pod_labels(one("base", "Deployment", service))
        assert any("podSelector" in peer and selects(peer["podSelector"], labels)
                   for peer in listener["networkPolicyPeers"]), service


# --- scaling -------------------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_consumers_scale_on_their_groups_lag_up_to_the_partitions(target: str) -> None:
    scaled = objects(target, "ScaledObject")
    assert scaled.keys() == SCALED
    bootstrap = one(target, "ConfigMap", "tradeflow-config")["data"]["TRADEFLOW_KAFKA_BOOTSTRAP"]
    for service, scaled_object in scaled.items():
        spec = scaled_object["spec"]
        assert spec["scaleTargetRef"]["name"] == service and service in objects(target, "Deployment")
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        (kafka,) = [t["metadata"] for t in spec["triggers"] if t["type"] == "kafka"]
        assert kafka["bootstrapServers"] == bootstrap
        assert kafka["consumerGroup"] == service_group(service), service
        assert kafka["allowIdleConsumers"] == "false"
        topics = [kafka["topic"]] if "topic" in kafka else ["strategy.signals.v1", "exec.orders.v1", "exec.fills.v1",
                                                                    "exec.accounts.v1"]
        assert spec["maxReplicaCount"] <= min(topic_by_name(t).partitions for t in topics), service
        for trigger in spec["triggers"]:
            if trigger["type"] == "prometheus":
                assert unknown_metrics(trigger["metadata"]["query"]) == set()


def test_execution_is_not_autoscaled() -> None:
    # ADR 0019: its paper broker reads md.ticks.v1 in the group of its orders; a second pod would
    # take trades from the first one's orders.
    assert "execution" not in objects("overlays/prod", "ScaledObject")
    assert one("overlays/prod", "Deployment", "execution")["spec"]["replicas"] == 1


# --- network paths -------------------------------------------------------------------------

def allowed_edges(target: str) -> set[tuple[str, str, int]]:
    """(from, to, port) between the namespace's workloads that both sides' NetworkPolicies allow."""
    workloads = {**objects(target, "Deployment"), **objects(target, "StatefulSet"), **objects(target, "CronJob")}
    labels = {name: pod_labels(w) for name, w in workloads.items()}
    labels["kafka"] = {"strimzi.io/cluster": "tradeflow", "strimzi.io/kind": "Kafka"}  # Strimzi's broker pods
    policies = list(objects(target, "NetworkPolicy").values())

    def governed(name: str, direction: str) -> list[dict]:
        return [p for p in policies if direction in p["spec"]["policyTypes"]
                and selects(p["spec"]["podSelector"], labels[name])]

    def admits(rules: list[dict], peer_key: str, peer: str, port: int) -> bool:
        for rule in rules:
            ports = [p["port"] for p in rule.get("ports", [])]
            peers = rule.get(peer_key, [])
            if ports and port not in ports:
                continue
            if any("podSelector" in p and "namespaceSelector" not in p and selects(p["podSelector"], labels[peer])
                   for p in peers):
                return True
        return False

    ports = {"kafka": [9092], "timescaledb": [5432], **{s: [p] for s, p in DESIGN_PORTS.items()}}
    edges = set()
    for source in labels:
        for destination, destination_ports in ports.items():
            for port in destination_ports:
                out = governed(source, "Egress")
                inn = governed(destination, "Ingress") if destination != "kafka" else None
                egress_ok = not out or any(admits(p["spec"].get("egress", []), "to", destination, port) for p in out)
                ingress_ok = inn is None or not inn or any(
                    admits(p["spec"].get("ingress", []), "from", source, port) for p in inn)
                if source != destination and egress_ok and ingress_ok and (out or inn):
                    edges.add((source, destination, port))
    return edges


def test_network_policies_allow_only_the_paths_of_the_design() -> None:
    expected = {(service, "kafka", 9092) for service in DESIGN_PORTS}
    expected |= {(service, "timescaledb", 5432) for service in SERVICES_WITH_TABLES}
    expected.add(("timescaledb-backup", "timescaledb", 5432))
    # The HTTP calls between services: the URLs in their Deployments.
    for service in DESIGN_PORTS:
        container = one("base", "Deployment", service)["spec"]["template"]["spec"]["containers"][0]
        for env in container["env"]:
            found = re.fullmatch(r"http://([a-z-]+):(\d+)", env.get("value", ""))
            if found:
                expected.add((service, found.group(1), int(found.group(2))))
    assert {(s, d) for s, d, _ in expected if d in DESIGN_PORTS} == {("strategy", "candle-builder"),
                                                                    ("risk", "candle-builder")}
    # Pods no policy governs (Strimzi's, the optimiser's) may still open connections to the
    # services' APIs only where the target's ingress admits them: those are not in this set.
    assert allowed_edges("overlays/prod") == expected


def test_every_tradeflow_pod_is_governed_in_both_directions() -> None:
    policies = list(objects("base", "NetworkPolicy").values())
    workloads = {**objects("base", "Deployment"), **objects("base", "StatefulSet"), **objects("base", "CronJob")}
    for name, workload in workloads.items():
        for direction in ("Ingress", "Egress"):
            assert any(direction in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], pod_labels(workload))
                       for p in policies), f"{name}: no {direction} policy"


# --- database, backups, secrets ------------------------------------------------------------

def test_the_database_is_the_pinned_timescaledb_ha_with_its_password_from_a_secret() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    statefulset = one("overlays/prod", "StatefulSet", "timescaledb")
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    assert container["image"] == compose["services"]["timescaledb"]["image"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "tradeflow-db", "key": "password"}
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] in [m["name"] for m in container["volumeMounts"]]
    service = one("overlays/prod", "Service", "timescaledb")
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(statefulset))


def test_backups_are_pg_dumps_onto_their_own_volume() -> None:
    cronjob = one("overlays/prod", "CronJob", "timescaledb-backup")
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    script = container["args"][0]
    assert "pg_dump --format=custom" in script and "pg_restore --list" in script
    subprocess.run(["sh", "-n", "-c", script], check=True)  # parses
    assert container["image"] == one("overlays/prod", "StatefulSet", "timescaledb")["spec"]["template"]["spec"][
        "containers"][0]["image"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    claim = volumes[mounts["/backups"]]["persistentVolumeClaim"]["claimName"]
    assert claim in objects("overlays/prod", "PersistentVolumeClaim")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    readme = (K8S / "README.md").read_text()
    assert "## Backup and restore" in readme and "pg_restore" in readme and "timescaledb_pre_restore" in readme


@pytest.mark.parametrize("target", TARGETS)
def test_secrets_only_by_reference(target: str) -> None:
    rendered = render(target)
    assert [o for o in rendered if o["kind"] == "Secret"] == []

    def containers(node: object):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers"):
                    yield from value
                else:
                    yield from containers(value)
        elif isinstance(node, list):
            for item in node:
                yield from containers(item)

    for obj in rendered:
        for container in containers(obj):
            for env in container.get("env", []):
                if SECRET_LIKE.search(env["name"]):
                    assert "secretKeyRef" in env.get("valueFrom", {}), f"{obj['metadata']['name']}: {env['name']}"


# --- monitoring ----------------------------------------------------------------------------

def test_the_prometheus_rule_is_the_rule_files() -> None:
    rule = one("base", "PrometheusRule", "tradeflow")
    files = sorted((REPO / "deploy" / "prometheus" / "rules").glob("*.yml"))
    groups = [g for path in files for g in yaml.safe_load(path.read_text())["groups"]]
    assert rule["spec"]["groups"] == groups, "run scripts/render-prometheus-rule.py"


def test_the_pod_monitor_scrapes_every_service_as_its_job() -> None:
    monitor = one("base", "PodMonitor", "tradeflow")["spec"]
    for service in DESIGN_PORTS:
        deployment = one("base", "Deployment", service)
        labels = pod_labels(deployment)
        assert selects(monitor["selector"], labels)
        assert labels[monitor["jobLabel"]] == service  # job="<service>", as the dashboards and rules expect
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        (endpoint,) = monitor["podMetricsEndpoints"]
        assert endpoint["port"] in [p["name"] for p in container["ports"]] and endpoint["path"] == "/metrics"
