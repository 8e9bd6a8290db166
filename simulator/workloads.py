"""Pure helpers about workload objects shared by the API semantics and the controllers: pod readiness,
conditions, owner references, a container's environment, int-or-percent arithmetic and PodDisruptionBudget
accounting."""

import base64
import binascii
import math
from collections.abc import Callable
from typing import Any

from simulator.selectors import selector_from_label_selector
from simulator.store import now_iso


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == kind:
            return cond
    return None


def set_condition(
    conditions: list[dict[str, Any]], kind: str, status: str, reason: str, message: str, *, update_time: bool = False
) -> list[dict[str, Any]]:
    """Replace one condition, keeping its transition time when its status did not change."""
    previous = next((c for c in conditions if c.get("type") == kind), None)
    if previous and (previous.get("status"), previous.get("reason"), previous.get("message")) == (
        status,
        reason,
        message,
    ):
        return conditions
    now = now_iso()
    new = {"type": kind, "status": status, "reason": reason, "message": message}
    new["lastTransitionTime"] = (
        previous["lastTransitionTime"]
        if previous and previous.get("status") == status and previous.get("lastTransitionTime")
        else now
    )
    if update_time:
        new["lastUpdateTime"] = now
    result = [c for c in conditions if c.get("type") != kind]
    index = next((i for i, c in enumerate(conditions) if c.get("type") == kind), len(result))
    result.insert(index, new)
    return result


def pod_ready(pod: dict[str, Any]) -> bool:
    cond = condition(pod, "Ready")
    return bool(cond and cond.get("status") == "True") and not (pod.get("metadata") or {}).get("deletionTimestamp")


def pod_finished(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def controller_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return ref
    return None


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    ref = controller_of(obj)
    return bool(ref and ref.get("uid") == uid)


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


class EnvUnresolved(Exception):
    """A container's env refers to a Secret or ConfigMap (or a key) that is not there (yet)."""


def container_env(
    pod: dict[str, Any], load: Callable[[str, str, str], dict[str, Any] | None]
) -> dict[str, dict[str, str]]:
    """Each container's environment as the kubelet hands it to the process: literal `value`s, and
    `valueFrom.secretKeyRef` / `configMapKeyRef` read from the pod's namespace (`load(plural, ns, name)`).

    Raises EnvUnresolved with the kubelet's message for a missing, non-optional reference: the pod then
    waits (CreateContainerConfigError) until it appears.
    """
    namespace = (pod.get("metadata") or {}).get("namespace", "default")
    found: dict[str, dict[str, str]] = {}
    for container in (pod.get("spec") or {}).get("containers") or []:
        env: dict[str, str] = {}
        for entry in container.get("env") or []:
            source = entry.get("valueFrom") or {}
            if "value" in entry or not source:
                env[entry["name"]] = str(entry.get("value", ""))
                continue
            for field, plural, kind in (
                ("secretKeyRef", "secrets", "Secret"),
                ("configMapKeyRef", "configmaps", "ConfigMap"),
            ):
                ref = source.get(field)
                if not isinstance(ref, dict):
                    continue
                obj = load(plural, namespace, str(ref.get("name", "")))
                value = _key_of(obj, str(ref.get("key", "")), secret=kind == "Secret") if obj else None
                if value is not None:
                    env[entry["name"]] = value
                elif not ref.get("optional"):
                    if obj is None:
                        raise EnvUnresolved(f'{kind.lower()} "{ref.get("name")}" not found')
                    raise EnvUnresolved(f"couldn't find key {ref.get('key')} in {kind} {namespace}/{ref.get('name')}")
        found[str(container.get("name", ""))] = env
    return found


def _key_of(obj: dict[str, Any], key: str, *, secret: bool) -> str | None:
    if secret:
        if key in (obj.get("stringData") or {}):
            return str(obj["stringData"][key])
        encoded = (obj.get("data") or {}).get(key)
        if encoded is None:
            return None
        try:
            return base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
    value = (obj.get("data") or {}).get(key)
    return None if value is None else str(value)


def scaled(value: Any, total: int, *, round_up: bool) -> int:
    """Resolve an int-or-percent field (e.g. "25%") against `total`."""
    if isinstance(value, str) and value.endswith("%"):
        try:
            percent = float(value[:-1])
        except ValueError:
            return 0
        exact = percent * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def pdb_matches(pdb: dict[str, Any], pod: dict[str, Any]) -> bool:
    if (pdb.get("metadata") or {}).get("namespace") != (pod.get("metadata") or {}).get("namespace"):
        return False
    selector = (pdb.get("spec") or {}).get("selector")
    return selector_from_label_selector(selector)((pod.get("metadata") or {}).get("labels") or {})


def pdb_status(pdb: dict[str, Any], pods: list[dict[str, Any]]) -> dict[str, Any]:
    """The budget's status over the pods of its namespace (expected = the matching pods that are not finished)."""
    matching = [p for p in pods if pdb_matches(pdb, p) and not pod_finished(p)]
    expected = len(matching)
    healthy = sum(1 for p in matching if pod_ready(p))
    spec = pdb.get("spec") or {}
    if spec.get("minAvailable") is not None:
        desired = scaled(spec["minAvailable"], expected, round_up=True)
    elif spec.get("maxUnavailable") is not None:
        desired = max(0, expected - scaled(spec["maxUnavailable"], expected, round_up=True))
    else:
        desired = expected
    return {
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "disruptionsAllowed": max(0, healthy - desired),
        "observedGeneration": (pdb.get("metadata") or {}).get("generation", 1),
    }
