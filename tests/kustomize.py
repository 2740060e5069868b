"""A small kustomize: renders deploy/k8s's base and overlays without the kustomize binary.

It implements the part of kustomize those kustomizations use (resources, namespace, labels
without selectors, images, replicas, JSON 6902 patches with a kind/name target) and refuses
anything else, so a new feature in a kustomization fails here instead of rendering wrong.
tests/unit/test_k8s_kustomize.py compares its output with `kubectl kustomize` where kubectl is
installed.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "replicas", "patches"}
# Kinds without a namespace among those the manifests use.
CLUSTER_SCOPED = {"Namespace"}
WORKLOADS = {"Deployment", "StatefulSet"}


class KustomizeError(ValueError):
    pass


def build(directory: Path) -> list[dict]:
    """The objects `kustomize build directory` outputs (order aside)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED
    if unsupported:
        raise KustomizeError(f"{directory}: kustomization fields this renderer does not implement: {sorted(unsupported)}")
    objects: list[dict] = []
    for resource in kustomization.get("resources", []):
        path = (directory / resource).resolve()
        if path.is_dir():
            objects.extend(build(path))
        else:
            objects.extend(copy.deepcopy(d) for d in yaml.safe_load_all(path.read_text()) if d)
    for patch in kustomization.get("patches", []):
        _patch(objects, patch, directory)
    for entry in kustomization.get("replicas", []):
        targets = [o for o in objects if o["kind"] in WORKLOADS and o["metadata"]["name"] == entry["name"]]
        if not targets:
            raise KustomizeError(f"replicas: no workload named {entry['name']}")
        for target in targets:
            target["spec"]["replicas"] = entry["count"]
    for image in kustomization.get("images", []):
        for obj in objects:
            _set_image(obj, image)
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    for labels in kustomization.get("labels", []):
        if labels.get("includeSelectors") or labels.get("includeTemplates"):
            raise KustomizeError("labels: only includeSelectors/includeTemplates false are implemented")
        for obj in objects:
            obj["metadata"].setdefault("labels", {}).update(labels["pairs"])
    return objects


def _patch(objects: list[dict], patch: dict, directory: Path) -> None:
    if set(patch) - {"target", "patch", "path"} or set(patch["target"]) - {"kind", "name"}:
        raise KustomizeError(f"patch form not implemented: {patch}")
    operations = yaml.safe_load(patch["patch"] if "patch" in patch else (directory / patch["path"]).read_text())
    if not isinstance(operations, list):
        raise KustomizeError("only JSON 6902 patches (a list of operations) are implemented")
    target = patch["target"]
    matched = [o for o in objects if o["kind"] == target["kind"] and target.get("name", o["metadata"]["name"])
               == o["metadata"]["name"]]
    if not matched:
        raise KustomizeError(f"patch target matches nothing: {target}")
    for obj in matched:
        for operation in operations:
            _apply(obj, operation)


def _apply(document: dict, operation: dict) -> None:
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in operation["path"].lstrip("/").split("/")]
    node = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key = int(last) if isinstance(node, list) and last != "-" else last
    op = operation["op"]
    if op == "replace":
        if isinstance(node, dict) and key not in node:
            raise KustomizeError(f"replace of a missing {operation['path']}")
        node[key] = operation["value"]
    elif op == "add":
        if isinstance(node, list):
            node.append(operation["value"]) if key == "-" else node.insert(key, operation["value"])
        else:
            node[key] = operation["value"]
    elif op == "remove":
        del node[key]
    else:
        raise KustomizeError(f"JSON patch op {op!r} not implemented")


def _set_image(node: object, image: dict) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                for container in value:
                    name, _, tag = container["image"].partition(":")
                    if name == image["name"]:
                        container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
            else:
                _set_image(value, image)
    elif isinstance(node, list):
        for item in node:
            _set_image(item, image)
