"""Pure helpers about workload objects shared by the API semantics and the controllers: pod readiness,
conditions, owner references, int-or-percent arithmetic and PodDisruptionBudget accounting."""

import math
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
