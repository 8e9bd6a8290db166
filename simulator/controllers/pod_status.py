"""A pod's status as a kubelet reports it when the pod starts, waits, turns ready or not, and completes.

Pure edits of the pod dict, as in `simulator.podfaults` (the failures); the kubelet decides when and
writes the pod.
"""

import hashlib

from simulator.controllers.context import Obj
from simulator.store import now_iso
from simulator.workloads import set_condition

READY_KINDS = ("ContainersReady", "Ready")
NOT_READY = "ContainersNotReady"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def conditions_true(conditions: list[Obj], kinds: tuple[str, ...]) -> list[Obj]:
    """Set these conditions True as a kubelet or the scheduler writes them: without a reason or message."""
    for kind in kinds:
        conditions = set_condition(conditions, kind, "True", "", "")
    for cond in conditions:
        if cond["type"] in kinds:
            cond.pop("reason", None)
            cond.pop("message", None)
    return conditions


def start(pod: Obj, node: Obj | None) -> None:
    """The pod runs on its node: addresses, the start conditions, containers running (not ready yet)."""
    spec, status = pod["spec"], pod["status"]
    addresses = (node or {}).get("status", {}).get("addresses") or []
    host_ip = next((a["address"] for a in addresses if a.get("type") == "InternalIP"), "10.0.0.1")
    pod_ip = f"10.42.{sum(map(ord, spec['nodeName'])) % 250}.{sum(map(ord, pod['metadata']['uid'])) % 250 + 2}"
    status.update(
        phase="Running",
        hostIP=host_ip,
        hostIPs=[{"ip": host_ip}],
        podIP=pod_ip,
        podIPs=[{"ip": pod_ip}],
        startTime=now_iso(),
    )
    conditions = list(status.get("conditions") or [])
    for kind in ("PodReadyToStartContainers", "Initialized", "PodScheduled"):
        conditions = set_condition(conditions, kind, "True", "", "")
    for cond in conditions:  # all of them: what a waiting pod was told no longer holds
        cond.pop("reason", None)
        cond.pop("message", None)
    status["conditions"] = conditions
    status["containerStatuses"] = [
        {
            "name": c.get("name", "main"),
            "image": c.get("image", ""),
            "imageID": f"docker.io/{c.get('image', '')}@sha256:{_digest(str(c.get('image')))}",
            "containerID": f"containerd://{_digest(pod['metadata']['uid'] + str(i))}",
            "ready": False,
            "started": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": now_iso()}},
        }
        for i, c in enumerate(spec.get("containers") or [])
    ]


def waiting(pod: Obj, reason: str, message: str) -> bool:
    """Mark the pod's containers waiting for `reason`; False when they already are (nothing to write)."""
    spec, status = pod.get("spec") or {}, pod.setdefault("status", {})
    state = {"waiting": {"reason": reason, "message": message}}
    statuses = [
        {"name": c.get("name", "main"), "image": c.get("image", ""), "imageID": "", "ready": False,
         "started": False, "restartCount": 0, "state": state}
        for c in spec.get("containers") or []
    ]  # fmt: skip
    if status.get("containerStatuses") == statuses:
        return False
    status["containerStatuses"] = statuses
    return True


def set_ready(pod: Obj, ready: bool) -> None:
    status = pod["status"]
    conditions = list(status.get("conditions") or [])
    if ready:
        conditions = conditions_true(conditions, READY_KINDS)
    else:
        for kind in READY_KINDS:
            conditions = set_condition(conditions, kind, "False", NOT_READY, "containers with unready status")
    status["conditions"] = conditions
    for container in status.get("containerStatuses") or []:
        container["ready"] = ready


def complete(pod: Obj) -> None:
    """The pod's containers exited 0: Succeeded, not ready (PodCompleted)."""
    _terminate(pod, phase="Succeeded", condition_reason="PodCompleted", exit_code=0, reason="Completed")


def fail(pod: Obj) -> None:
    """The pod's container exited 1: Failed, not ready (the way an upgrade Job's pod fails)."""
    _terminate(pod, phase="Failed", condition_reason="PodFailed", exit_code=1, reason="Error")


def _terminate(pod: Obj, *, phase: str, condition_reason: str, exit_code: int, reason: str) -> None:
    """The pod's containers exited with `exit_code`: the pod ends in `phase`, not ready, its containers terminated."""
    status = pod["status"]
    status["phase"] = phase
    conditions = list(status.get("conditions") or [])
    for kind in READY_KINDS:
        conditions = set_condition(conditions, kind, "False", condition_reason, "")
    status["conditions"] = conditions
    for container in status.get("containerStatuses") or []:
        started = (container.get("state") or {}).get("running", {}).get("startedAt", now_iso())
        terminated = {"exitCode": exit_code, "reason": reason, "startedAt": started, "finishedAt": now_iso()}
        container.update(ready=False, started=False, state={"terminated": terminated})
