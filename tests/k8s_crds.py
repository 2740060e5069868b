"""Schemas of the custom resources deploy/k8s uses, for offline validation (JSON Schema).

kubernetes-validate knows the core API only; the operators' kinds are checked against these:
the fields each kind defines in its operator's documentation (Strimzi 0.45 `kafka.strimzi.io/v1beta2`
API reference, KEDA 2.16 ScaledObject spec and Kafka/Prometheus scaler parameters, Prometheus
operator `monitoring.coreos.com/v1` API), with unknown fields refused at every level spelled out,
the types and the enumerations. Deeper pass-through objects (pod templates, HPA behaviour) are
left open where the operator passes them to Kubernetes unchanged.
"""

from __future__ import annotations

import jsonschema

OPEN = {"type": "object"}
QUANTITY = {"type": ["string", "integer", "number"]}
NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
LABEL_SELECTOR = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "matchLabels": STRING_MAP,
        "matchExpressions": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["key", "operator"],
            "properties": {"key": {"type": "string"}, "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                           "values": {"type": "array", "items": {"type": "string"}}}}},
    },
}
RESOURCES = {"type": "object", "additionalProperties": False, "properties": {
    "requests": {"type": "object", "additionalProperties": QUANTITY},
    "limits": {"type": "object", "additionalProperties": QUANTITY}}}


def _metadata(required_labels: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "required": ["name"], "properties": {
        "name": NAME, "namespace": NAME, "labels": {**STRING_MAP, "required": list(required_labels)},
        "annotations": STRING_MAP}, "additionalProperties": False}


def _kind(api_version: str, kind: str, spec: dict, required_labels: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": {"apiVersion": {"const": api_version}, "kind": {"const": kind},
                           "metadata": _metadata(required_labels), "spec": spec}}


# --- Strimzi (kafka.strimzi.io/v1beta2) --------------------------------------------------------

_STRIMZI_VOLUME = {"type": "object", "additionalProperties": False, "required": ["type"], "properties": {
    "id": {"type": "integer", "minimum": 0}, "type": {"enum": ["ephemeral", "persistent-claim"]},
    "size": {"type": "string"}, "sizeLimit": {"type": "string"}, "class": {"type": "string"},
    "selector": STRING_MAP, "deleteClaim": {"type": "boolean"}, "kraftMetadata": {"enum": ["shared"]},
    "overrides": {"type": "array"}}}
_STRIMZI_STORAGE = {"type": "object", "required": ["type"], "additionalProperties": False, "properties": {
    "type": {"enum": ["ephemeral", "persistent-claim", "jbod"]},
    "volumes": {"type": "array", "items": _STRIMZI_VOLUME, "minItems": 1},
    "size": {"type": "string"}, "class": {"type": "string"}, "deleteClaim": {"type": "boolean"},
    "kraftMetadata": {"enum": ["shared"]}}}
_NETWORK_POLICY_PEER = {"type": "object", "additionalProperties": False, "properties": {
    "podSelector": LABEL_SELECTOR, "namespaceSelector": LABEL_SELECTOR, "ipBlock": OPEN}}
_LISTENER = {"type": "object", "additionalProperties": False, "required": ["name", "port", "type", "tls"], "properties": {
    "name": {"type": "string", "pattern": "^[a-z0-9]{1,11}$"},
    "port": {"type": "integer", "minimum": 9092},
    "type": {"enum": ["internal", "route", "loadbalancer", "nodeport", "ingress", "cluster-ip"]},
    "tls": {"type": "boolean"}, "authentication": OPEN, "configuration": OPEN,
    "networkPolicyPeers": {"type": "array", "items": _NETWORK_POLICY_PEER}}}
_OPERATOR = {"type": "object", "additionalProperties": False, "properties": {
    "watchedNamespace": {"type": "string"}, "image": {"type": "string"},
    "reconciliationIntervalMs": {"type": "integer"}, "reconciliationIntervalSeconds": {"type": "integer"},
    "resources": RESOURCES, "logging": OPEN, "jvmOptions": OPEN, "livenessProbe": OPEN, "readinessProbe": OPEN,
    "startupProbe": OPEN}}

KAFKA = _kind("kafka.strimzi.io/v1beta2", "Kafka", {
    "type": "object", "additionalProperties": False, "required": ["kafka"], "properties": {
        "kafka": {"type": "object", "additionalProperties": False, "required": ["listeners"], "properties": {
            "version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
            "metadataVersion": {"type": "string", "pattern": r"^\d+\.\d+-IV\d+$"},
            "replicas": {"type": "integer"}, "image": {"type": "string"},
            "listeners": {"type": "array", "items": _LISTENER, "minItems": 1},
            "config": {"type": "object", "additionalProperties": {"type": ["string", "integer", "number", "boolean"]}},
            "storage": _STRIMZI_STORAGE, "authorization": OPEN, "rack": OPEN, "resources": RESOURCES,
            "jvmOptions": OPEN, "template": OPEN, "metricsConfig": OPEN, "logging": OPEN,
            "livenessProbe": OPEN, "readinessProbe": OPEN, "quotas": OPEN, "tieredStorage": OPEN}},
        "zookeeper": OPEN,
        "entityOperator": {"type": "object", "additionalProperties": False, "properties": {
            "topicOperator": _OPERATOR, "userOperator": _OPERATOR, "template": OPEN}},
        "clusterCa": OPEN, "clientsCa": OPEN, "cruiseControl": OPEN, "kafkaExporter": OPEN,
        "maintenanceTimeWindows": {"type": "array", "items": {"type": "string"}}}})

KAFKA_NODE_POOL = _kind("kafka.strimzi.io/v1beta2", "KafkaNodePool", {
    "type": "object", "additionalProperties": False, "required": ["replicas", "roles", "storage"], "properties": {
        "replicas": {"type": "integer", "minimum": 0},
        "roles": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"enum": ["controller", "broker"]}},
        "storage": _STRIMZI_STORAGE, "resources": RESOURCES, "jvmOptions": OPEN, "template": OPEN}},
    required_labels=("strimzi.io/cluster",))

KAFKA_TOPIC = _kind("kafka.strimzi.io/v1beta2", "KafkaTopic", {
    "type": "object", "additionalProperties": False, "properties": {
        "topicName": {"type": "string", "pattern": r"^[a-zA-Z0-9._-]{1,249}$"},
        "partitions": {"type": "integer", "minimum": 1},
        "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
        "config": {"type": "object", "additionalProperties": {"type": ["string", "integer", "number", "boolean"]}}}},
    required_labels=("strimzi.io/cluster",))

# --- KEDA (keda.sh/v1alpha1) -------------------------------------------------------------------

_BOOL_STRING = {"enum": ["true", "false"]}
_INT_STRING = {"type": "string", "pattern": r"^\d+$"}
_KAFKA_TRIGGER_METADATA = {"type": "object", "additionalProperties": False,
                           "required": ["bootstrapServers", "consumerGroup"], "properties": {
    "bootstrapServers": {"type": "string"}, "consumerGroup": {"type": "string"}, "topic": {"type": "string"},
    "lagThreshold": _INT_STRING, "activationLagThreshold": _INT_STRING,
    "offsetResetPolicy": {"enum": ["earliest", "latest"]}, "allowIdleConsumers": _BOOL_STRING,
    "scaleToZeroOnInvalidOffset": _BOOL_STRING, "excludePersistentLag": _BOOL_STRING,
    "limitToPartitionsWithLag": _BOOL_STRING, "ensureEvenDistributionOfPartitions": _BOOL_STRING,
    "partitionLimitation": {"type": "string"}, "version": {"type": "string"}, "sasl": {"type": "string"},
    "tls": {"enum": ["enable", "disable"]}, "unsafeSsl": _BOOL_STRING}}
_PROMETHEUS_TRIGGER_METADATA = {"type": "object", "additionalProperties": False,
                                "required": ["serverAddress", "query", "threshold"], "properties": {
    "serverAddress": {"type": "string", "pattern": "^https?://"}, "query": {"type": "string"},
    "threshold": {"type": "string", "pattern": r"^\d+(\.\d+)?$"},
    "activationThreshold": {"type": "string", "pattern": r"^\d+(\.\d+)?$"},
    "namespace": {"type": "string"}, "customHeaders": {"type": "string"}, "ignoreNullValues": _BOOL_STRING,
    "unsafeSsl": _BOOL_STRING, "queryParameters": {"type": "string"}}}
_TRIGGER = {"type": "object", "required": ["type", "metadata"], "properties": {
    "type": {"enum": ["kafka", "prometheus"]}, "name": {"type": "string"},
    "metadata": {"type": "object"}, "authenticationRef": {"type": "object", "additionalProperties": False,
                                                         "required": ["name"], "properties": {
                                                             "name": {"type": "string"},
                                                             "kind": {"enum": ["TriggerAuthentication",
                                                                               "ClusterTriggerAuthentication"]}}},
    "metricType": {"enum": ["AverageValue", "Value", "Utilization"]}, "useCachedMetrics": {"type": "boolean"}},
    "additionalProperties": False,
    "allOf": [
        {"if": {"properties": {"type": {"const": "kafka"}}}, "then": {"properties": {"metadata": _KAFKA_TRIGGER_METADATA}}},
        {"if": {"properties": {"type": {"const": "prometheus"}}},
         "then": {"properties": {"metadata": _PROMETHEUS_TRIGGER_METADATA}}},
    ]}

SCALED_OBJECT = _kind("keda.sh/v1alpha1", "ScaledObject", {
    "type": "object", "additionalProperties": False, "required": ["scaleTargetRef", "triggers"], "properties": {
        "scaleTargetRef": {"type": "object", "additionalProperties": False, "required": ["name"], "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "name": {"type": "string"},
            "envSourceContainerName": {"type": "string"}}},
        "pollingInterval": {"type": "integer", "minimum": 1}, "cooldownPeriod": {"type": "integer", "minimum": 0},
        "initialCooldownPeriod": {"type": "integer", "minimum": 0}, "idleReplicaCount": {"type": "integer"},
        "minReplicaCount": {"type": "integer", "minimum": 0}, "maxReplicaCount": {"type": "integer", "minimum": 1},
        "fallback": {"type": "object", "additionalProperties": False, "required": ["failureThreshold", "replicas"],
                     "properties": {"failureThreshold": {"type": "integer"}, "replicas": {"type": "integer"},
                                    "behavior": {"type": "string"}}},
        "advanced": {"type": "object", "additionalProperties": False, "properties": {
            "restoreToOriginalReplicaCount": {"type": "boolean"},
            "horizontalPodAutoscalerConfig": {"type": "object", "additionalProperties": False, "properties": {
                "name": {"type": "string"}, "behavior": OPEN}},
            "scalingModifiers": OPEN}},
        "triggers": {"type": "array", "minItems": 1, "items": _TRIGGER}}})

# --- Prometheus operator (monitoring.coreos.com/v1) -----------------------------------------------

POD_MONITOR = _kind("monitoring.coreos.com/v1", "PodMonitor", {
    "type": "object", "additionalProperties": False, "required": ["selector"], "properties": {
        "jobLabel": {"type": "string"}, "podTargetLabels": {"type": "array", "items": {"type": "string"}},
        "selector": LABEL_SELECTOR,
        "namespaceSelector": {"type": "object", "additionalProperties": False, "properties": {
            "any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}}},
        "podMetricsEndpoints": {"type": "array", "items": {"type": "object", "additionalProperties": False, "properties": {
            "port": {"type": "string"}, "portNumber": {"type": "integer"}, "path": {"type": "string"},
            "scheme": {"enum": ["http", "https"]}, "interval": {"type": "string", "pattern": r"^\d+(ms|s|m|h)$"},
            "scrapeTimeout": {"type": "string"}, "honorLabels": {"type": "boolean"}, "relabelings": {"type": "array"},
            "metricRelabelings": {"type": "array"}}}},
        "sampleLimit": {"type": "integer"}}})

_RULE = {"type": "object", "additionalProperties": False, "required": ["expr"], "properties": {
    "alert": {"type": "string"}, "record": {"type": "string"}, "expr": {"type": ["string", "integer"]},
    "for": {"type": "string"}, "keep_firing_for": {"type": "string"}, "labels": STRING_MAP, "annotations": STRING_MAP},
    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}]}
PROMETHEUS_RULE = _kind("monitoring.coreos.com/v1", "PrometheusRule", {
    "type": "object", "additionalProperties": False, "properties": {
        "groups": {"type": "array", "items": {"type": "object", "additionalProperties": False, "required": ["name", "rules"],
                                              "properties": {"name": {"type": "string"}, "interval": {"type": "string"},
                                                             "limit": {"type": "integer"},
                                                             "rules": {"type": "array", "items": _RULE}}}}}})

SCHEMAS = {(s["properties"]["apiVersion"]["const"], s["properties"]["kind"]["const"]): s
           for s in (KAFKA, KAFKA_NODE_POOL, KAFKA_TOPIC, SCALED_OBJECT, POD_MONITOR, PROMETHEUS_RULE)}
CRD_GROUPS = {"kafka.strimzi.io", "keda.sh", "monitoring.coreos.com"}


def is_custom(document: dict) -> bool:
    return document["apiVersion"].split("/")[0] in CRD_GROUPS


def crd_errors(document: dict) -> list[str]:
    """Schema errors of a custom resource ("unknown kind" for one without a schema here)."""
    schema = SCHEMAS.get((document["apiVersion"], document["kind"]))
    if schema is None:
        return [f"no schema for {document['apiVersion']} {document['kind']}"]
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{'.'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}" for e in validator.iter_errors(document)]
