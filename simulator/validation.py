"""Validation of objects on create and update: a subset of the API server's rules, enough that the
mistakes a manifest author makes (no selector, selector not matching the template, a container
without an image, a bad name or label) are refused with a 422 naming the field, as a real cluster does.
"""

import base64
import binascii
import re
from typing import Any

from simulator.resources import ResourceType
from simulator.selectors import label_key_valid, label_value_valid, selector_from_label_selector

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_WORKLOADS = {"Deployment", "ReplicaSet", "DaemonSet", "StatefulSet"}

Causes = list[tuple[str, str]]


def validate(rt: ResourceType, obj: dict[str, Any]) -> Causes:
    """The problems with `obj` as (field path, message); empty when it is acceptable."""
    causes: Causes = []
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return [("metadata", "Required value")]
    name = meta.get("name")
    pattern, limit = (_LABEL, 63) if rt.kind in ("Namespace", "Service") else (_SUBDOMAIN, 253)
    if not isinstance(name, str) or not name:
        causes.append(("metadata.name", "Required value: name or generateName is required"))
    elif len(name) > limit or not pattern.match(name):
        causes.append(
            (
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 name must consist of lower case alphanumeric '
                "characters, '-' or '.', and must start and end with an alphanumeric character",
            )
        )
    for key in ("labels", "annotations"):
        value = meta.get(key)
        if value is None:
            continue
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            causes.append((f"metadata.{key}", "Invalid value: must be a map of strings"))
    labels = meta.get("labels")
    if isinstance(labels, dict):
        for key, value in labels.items():
            if not label_key_valid(str(key)) or not label_value_valid(str(value)):
                causes.append(("metadata.labels", f'Invalid value: "{key}={value}": not a valid label'))
    spec = obj.get("spec")
    if rt.kind in _WORKLOADS or rt.kind in ("Job", "Pod"):
        if not isinstance(spec, dict):
            return [*causes, ("spec", "Required value")]
    if rt.kind in _WORKLOADS:
        causes += _validate_workload(rt.kind, spec or {})
    elif rt.kind == "Job":
        causes += _validate_pod_template(spec.get("template") if spec else None, "spec.template", job=True)
    elif rt.kind == "Pod":
        causes += _validate_pod_spec(spec, "spec")
    elif rt.kind in ("ConfigMap", "Secret"):
        for key in ("data", "stringData", "binaryData"):
            data = obj.get(key)
            if data is not None and (not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values())):
                causes.append((key, "Invalid value: must be a map of strings"))
            elif rt.kind == "Secret" and key == "data" and isinstance(data, dict):
                causes += [(f"data[{k}]", "Invalid value: not base64") for k, v in data.items() if not _base64(v)]
    elif rt.kind == "PodDisruptionBudget" and isinstance(spec, dict):
        if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
            causes.append(("spec", "Invalid value: minAvailable and maxUnavailable cannot be both set"))
    return causes


def _validate_workload(kind: str, spec: dict[str, Any]) -> Causes:
    causes: Causes = []
    replicas = spec.get("replicas")
    if replicas is not None and (not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0):
        causes.append(("spec.replicas", "Invalid value: must be a non-negative integer"))
    selector = spec.get("selector")
    if not isinstance(selector, dict) or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        causes.append(("spec.selector", "Required value"))
    template = spec.get("template")
    causes += _validate_pod_template(template, "spec.template", job=False)
    if isinstance(selector, dict) and isinstance(template, dict) and not causes:
        labels = (template.get("metadata") or {}).get("labels") or {}
        if not selector_from_label_selector(selector)(labels):
            causes.append(
                ("spec.template.metadata.labels", "Invalid value: `selector` does not match template `labels`")
            )
    return causes


def _validate_pod_template(template: Any, path: str, *, job: bool) -> Causes:
    if not isinstance(template, dict):
        return [(path, "Required value")]
    spec = template.get("spec")
    causes = _validate_pod_spec(spec, f"{path}.spec")
    if job and isinstance(spec, dict) and spec.get("restartPolicy") not in ("Never", "OnFailure"):
        causes.append(
            (
                f"{path}.spec.restartPolicy",
                f'Unsupported value: "{spec.get("restartPolicy", "Always")}": supported values: "OnFailure", "Never"',
            )
        )
    return causes


def _validate_pod_spec(spec: Any, path: str) -> Causes:
    if not isinstance(spec, dict):
        return [(path, "Required value")]
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return [(f"{path}.containers", "Required value")]
    causes: Causes = []
    for index, container in enumerate(containers):
        where = f"{path}.containers[{index}]"
        if not isinstance(container, dict):
            causes.append((where, "Invalid value: must be an object"))
            continue
        name = container.get("name")
        if not isinstance(name, str) or not _LABEL.match(name):
            causes.append((f"{where}.name", "Required value: a DNS-1123 label"))
        if not isinstance(container.get("image"), str) or not container.get("image"):
            causes.append((f"{where}.image", "Required value"))
        env = container.get("env")
        if env is not None and (
            not isinstance(env, list) or not all(isinstance(e, dict) and e.get("name") for e in env)
        ):
            causes.append((f"{where}.env", "Invalid value: each entry needs a name"))
        elif env:
            for i, entry in enumerate(env):
                if entry.get("value") and entry.get("valueFrom"):
                    causes.append(
                        (f"{where}.env[{i}].valueFrom", "Invalid value: may not be specified when `value` is not empty")
                    )
    return causes


def _base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True
