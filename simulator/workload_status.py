"""How a Deployment's and a DaemonSet's status say where their rollout is, computed as the Kubernetes
controllers compute it, so `kubectl rollout status`, Argo CD, Flux and edgefleet read the same answer.

- A pod is *available* once it has been Ready for the workload's `minReadySeconds` (the Ready
  condition's lastTransitionTime says since when), as `podutil.IsPodAvailable` has it.
- A Deployment's `Available` condition is True when at least `replicas - maxUnavailable` are available.
- Its `Progressing` condition follows the deployment controller's `syncRolloutStatus`: True with
  `NewReplicaSetCreated` / `FoundNewReplicaSet` when a new template starts rolling out, True with
  `ReplicaSetUpdated` (and a new lastUpdateTime) each time the rollout makes progress (more updated,
  ready or available replicas, fewer old ones), True with `NewReplicaSetAvailable` once complete, and
  False with `ProgressDeadlineExceeded` once the new ReplicaSet has made no progress for
  `spec.progressDeadlineSeconds` since lastUpdateTime. A complete rollout is not timed out later (a
  pod that fails after completion makes the Deployment unavailable, not "not progressing"), and a
  Deployment without a deadline has no Progressing condition.

Pure functions of the objects and the wall clock: the controllers call them and write what changed.
Each returns, beside the status, the wall-clock time at which it would change by itself (a pod
reaching minReadySeconds, a deadline passing), so the site sets a timer instead of polling.
"""

import calendar
import time
from typing import Any

from simulator.store import now_iso
from simulator.workloads import condition, pod_ready, scaled, set_condition

PROGRESSING, AVAILABLE = "Progressing", "Available"
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
NO_DEADLINE = 2**31 - 1  # math.MaxInt32: "no progress deadline", as the API allows


def parse_time(stamp: Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp as Kubernetes writes them (`2025-03-03T12:00:00Z`)."""
    if not isinstance(stamp, str) or len(stamp) < 20:
        return None
    try:
        return float(calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return None


def pod_available(pod: dict[str, Any], min_ready: int, now: float) -> tuple[bool, float | None]:
    """(available now, when it becomes available if it stays Ready): Ready for `min_ready` seconds."""
    if not pod_ready(pod):
        return False, None
    if min_ready <= 0:
        return True, None
    since = parse_time((condition(pod, "Ready") or {}).get("lastTransitionTime"))
    if since is None or since + min_ready <= now:
        return True, None
    return False, since + min_ready


def _count_available(pods: list[dict[str, Any]], min_ready: int, now: float) -> tuple[int, float | None]:
    available, soonest = 0, None
    for pod in pods:
        ok, at = pod_available(pod, min_ready, now)
        available += ok
        if at is not None and (soonest is None or at < soonest):
            soonest = at
    return available, soonest


def progress_deadline(spec: dict[str, Any]) -> int | None:
    value = spec.get("progressDeadlineSeconds")
    if isinstance(value, bool) or not isinstance(value, int) or value == NO_DEADLINE:
        return None
    return value


def _progressed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """The deployment controller's `DeploymentProgressing`: the new status shows any step forward."""

    def get(status: dict[str, Any], key: str) -> int:
        return int(status.get(key) or 0)

    old_leftover = get(old, "replicas") - get(old, "updatedReplicas")
    new_leftover = get(new, "replicas") - get(new, "updatedReplicas")
    return (
        get(new, "updatedReplicas") > get(old, "updatedReplicas")
        or new_leftover < old_leftover
        or get(new, "readyReplicas") > get(old, "readyReplicas")
        or get(new, "availableReplicas") > get(old, "availableReplicas")
    )


def _refresh(conditions: list[dict[str, Any]], status: str, reason: str, message: str) -> list[dict[str, Any]]:
    """Set Progressing and move its lastUpdateTime to now even when nothing else changed: progress is
    recorded by the update time, which the deadline counts from."""
    conditions = set_condition(conditions, PROGRESSING, status, reason, message, update_time=True)
    for cond in conditions:
        if cond.get("type") == PROGRESSING:
            cond["lastUpdateTime"] = now_iso()
    return conditions


def deployment_status(
    deploy: dict[str, Any],
    *,
    new_name: str,
    created: bool,
    all_pods: list[dict[str, Any]],
    updated_pods: list[dict[str, Any]],
    now: float,
) -> tuple[dict[str, Any], float | None]:
    """The Deployment's new status and when (wall clock) to look again, from the pods of its
    ReplicaSets (`all_pods`) and of its newest one (`updated_pods`, named `new_name`; `created` in
    this pass or found)."""
    meta, spec = deploy["metadata"], deploy.get("spec") or {}
    old = deploy.get("status") or {}
    replicas = int(spec.get("replicas", 1))
    min_ready = int(spec.get("minReadySeconds") or 0)
    ready = sum(1 for p in all_pods if pod_ready(p))
    available, wake = _count_available(all_pods, min_ready, now)
    status: dict[str, Any] = {
        "observedGeneration": meta.get("generation", 1),
        "replicas": len(all_pods),
        "updatedReplicas": len(updated_pods),
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": max(0, replicas - available),
    }
    strategy = spec.get("strategy") or {}
    rolling = strategy.get("rollingUpdate") or {}
    max_unavailable = scaled(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if strategy.get("type") == "Recreate":
        max_unavailable = 0
    minimum = available >= replicas - max_unavailable
    conditions = set_condition(
        list(old.get("conditions") or []),
        AVAILABLE,
        "True" if minimum else "False",
        "MinimumReplicasAvailable" if minimum else "MinimumReplicasUnavailable",
        "Deployment has minimum availability." if minimum else "Deployment does not have minimum availability.",
        update_time=True,
    )
    deadline = progress_deadline(spec)
    if deadline is None:
        conditions = [c for c in conditions if c.get("type") != PROGRESSING]
    else:
        conditions, at = _progressing(
            conditions, old, status, replicas=replicas, new_name=new_name, created=created, deadline=deadline
        )
        if at is not None and (wake is None or at < wake):
            wake = at
    # Kubernetes lists Progressing before Available once both exist; keep a stable order.
    conditions.sort(key=lambda c: 0 if c["type"] == PROGRESSING else 1)
    status["conditions"] = conditions
    return {k: v for k, v in status.items() if v or k in ("observedGeneration", "conditions")}, wake


def _progressing(
    conditions: list[dict[str, Any]],
    old: dict[str, Any],
    status: dict[str, Any],
    *,
    replicas: int,
    new_name: str,
    created: bool,
    deadline: int,
) -> tuple[list[dict[str, Any]], float | None]:
    current = next((c for c in conditions if c.get("type") == PROGRESSING), None)
    if current is None or f'"{new_name}"' not in str(current.get("message", "")):
        # A new template is rolling out (or a Deployment seen for the first time): the deadline starts now.
        if created:
            reason, message = NEW_RS_CREATED, f'Created new replica set "{new_name}"'
        else:
            reason, message = FOUND_NEW_RS, f'Found new replica set "{new_name}"'
        conditions = _refresh(conditions, "True", reason, message)
        current = next(c for c in conditions if c.get("type") == PROGRESSING)
    if current.get("reason") == NEW_RS_AVAILABLE and status["replicas"] == status["updatedReplicas"]:
        return conditions, None  # a complete rollout stays complete until the next template
    complete = (
        status["updatedReplicas"] == replicas
        and status["replicas"] == replicas
        and status["availableReplicas"] == replicas
    )
    if complete:
        message = f'ReplicaSet "{new_name}" has successfully progressed.'
        return set_condition(conditions, PROGRESSING, "True", NEW_RS_AVAILABLE, message, update_time=True), None
    if _progressed(old, status):
        message = f'ReplicaSet "{new_name}" is progressing.'
        return _refresh(conditions, "True", RS_UPDATED, message), time.time() + deadline + 1
    if current.get("reason") == TIMED_OUT:
        return conditions, None
    since = parse_time(current.get("lastUpdateTime")) or parse_time(current.get("lastTransitionTime")) or time.time()
    if since + deadline < time.time():
        message = f'ReplicaSet "{new_name}" has timed out progressing.'
        return set_condition(conditions, PROGRESSING, "False", TIMED_OUT, message, update_time=True), None
    return conditions, since + deadline + 1


def daemonset_status(
    ds: dict[str, Any], *, desired: int, pods: list[dict[str, Any]], revision: str, now: float
) -> tuple[dict[str, Any], float | None]:
    """The DaemonSet's status (what `kubectl rollout status daemonset/x` reads): `desired` nodes should
    run its pod; pods labelled with the current `revision` are updated; available after minReadySeconds."""
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    ready = sum(1 for p in pods if pod_ready(p))
    available, wake = _count_available(pods, min_ready, now)
    status = {
        "currentNumberScheduled": len(pods),
        "desiredNumberScheduled": desired,
        "numberMisscheduled": 0,
        "numberReady": ready,
        "numberAvailable": available,
        "numberUnavailable": max(0, desired - available),
        "updatedNumberScheduled": sum(
            1 for p in pods if p["metadata"].get("labels", {}).get("controller-revision-hash") == revision
        ),
        "observedGeneration": ds["metadata"].get("generation", 1),
    }
    if not status["numberUnavailable"]:
        del status["numberUnavailable"]
    return status, wake
