"""What a workload pod looks like when it fails the way pods fail in the field, for the fault kinds
`crashloop_workloads` (its containers exit as soon as they start: CrashLoopBackOff) and
`image_pull_failure` (its image cannot be pulled: ErrImagePull, then ImagePullBackOff).

Pure edits of a pod's status, as the kubelet reports them; the controllers decide when (timers) and
write the pod.
"""

from typing import Any

from simulator.store import now_iso
from simulator.workloads import set_condition

CRASH_LOOP = "CrashLoopBackOff"
ERR_IMAGE_PULL = "ErrImagePull"
IMAGE_PULL_BACK_OFF = "ImagePullBackOff"


def waiting_reason(pod: dict[str, Any]) -> str:
    """Why the pod's first waiting container waits (CrashLoopBackOff, ImagePullBackOff, ...), or ""."""
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting")
        if waiting:
            return str(waiting.get("reason", ""))
    return ""


def _not_ready(status: dict[str, Any], names: str) -> None:
    conditions = list(status.get("conditions") or [])
    for kind in ("ContainersReady", "Ready"):
        conditions = set_condition(
            conditions, kind, "False", "ContainersNotReady", f"containers with unready status: [{names}]"
        )
    status["conditions"] = conditions


def image_pull_fails(pod: dict[str, Any], node: dict[str, Any] | None, *, backing_off: bool) -> bool:
    """The pod stays Pending with its containers waiting on the image; returns whether it changed."""
    reason = IMAGE_PULL_BACK_OFF if backing_off else ERR_IMAGE_PULL
    if waiting_reason(pod) == reason:
        return False
    status = pod["status"]
    addresses = (node or {}).get("status", {}).get("addresses") or []
    host_ip = next((a["address"] for a in addresses if a.get("type") == "InternalIP"), "10.0.0.1")
    status.setdefault("startTime", now_iso())
    status.update(hostIP=host_ip, hostIPs=[{"ip": host_ip}])
    containers = pod["spec"].get("containers") or []
    statuses = []
    for container in containers:
        image = str(container.get("image", ""))
        message = (
            f'Back-off pulling image "{image}"'
            if backing_off
            else f'failed to pull and unpack image "{image}": failed to resolve reference "{image}": not found'
        )
        statuses.append(
            {
                "name": container.get("name", "main"),
                "image": image,
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": {"waiting": {"reason": reason, "message": message}},
            }
        )
    status["containerStatuses"] = statuses
    conditions = list(status.get("conditions") or [])
    for kind in ("PodReadyToStartContainers", "Initialized"):
        conditions = set_condition(conditions, kind, "True", "", "")
    for cond in conditions:
        if cond["type"] in ("PodReadyToStartContainers", "Initialized"):
            cond.pop("reason", None)
            cond.pop("message", None)
    status["conditions"] = conditions
    _not_ready(status, ", ".join(str(c.get("name", "main")) for c in containers))
    return True


def crash(pod: dict[str, Any]) -> float:
    """The containers exited (again): count the restart and report the back-off before the next one,
    which doubles from 10 s up to 5 minutes as the kubelet's does. Returns the back-off in seconds."""
    status = pod["status"]
    containers = status.get("containerStatuses") or []
    restarts = max((int(c.get("restartCount") or 0) for c in containers), default=0) + 1
    backoff = min(10.0 * 2 ** min(restarts - 1, 5), 300.0)
    finished = now_iso()
    meta = pod["metadata"]
    for container in containers:
        started = (container.get("state") or {}).get("running", {}).get("startedAt", finished)
        container.update(
            ready=False,
            started=False,
            restartCount=restarts,
            lastState={
                "terminated": {
                    "exitCode": 1,
                    "reason": "Error",
                    "startedAt": started,
                    "finishedAt": finished,
                    "containerID": container.get("containerID", ""),
                }
            },
            state={
                "waiting": {
                    "reason": CRASH_LOOP,
                    "message": f"back-off {backoff:.0f}s restarting failed container={container.get('name')} "
                    f"pod={meta['name']}_{meta['namespace']}({meta['uid']})",
                }
            },
        )
    _not_ready(status, ", ".join(str(c.get("name")) for c in containers))
    return backoff


def run_again(pod: dict[str, Any]) -> None:
    """The containers run again (the fault is gone); their restart counts stay."""
    for container in pod["status"].get("containerStatuses") or []:
        container.update(started=True, state={"running": {"startedAt": now_iso()}})
