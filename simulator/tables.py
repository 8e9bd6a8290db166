"""Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks for, with the columns a K3s
server gives nodes, pods and deployments (and NAME/AGE for everything else)."""

from datetime import UTC, datetime
from typing import Any

from simulator.resources import ResourceType
from simulator.upgrade_plans import plan_row
from simulator.workloads import condition, pod_ready


def _age(obj: dict[str, Any]) -> str:
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    if not stamp:
        return "<unknown>"
    try:
        created = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<unknown>"
    seconds = int((datetime.now(UTC) - created).total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _col(name: str, kind: str = "string", priority: int = 0, description: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "type": kind,
        "format": "name" if name == "Name" else "",
        "description": description,
        "priority": priority,
    }


def _node_row(node: dict[str, Any]) -> list[Any]:
    ready = condition(node, "Ready")
    status = (
        "Ready"
        if ready and ready.get("status") == "True"
        else "NotReady"
        if ready and ready.get("status") == "False"
        else "Unknown"
    )
    if (node.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    labels = (node.get("metadata") or {}).get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    info = (node.get("status") or {}).get("nodeInfo") or {}
    addresses = {a.get("type"): a.get("address") for a in (node.get("status") or {}).get("addresses") or []}
    return [
        node["metadata"]["name"],
        status,
        ",".join(roles) or "<none>",
        _age(node),
        info.get("kubeletVersion", ""),
        addresses.get("InternalIP", "<none>"),
        addresses.get("ExternalIP", "<none>"),
        info.get("osImage", ""),
        info.get("kernelVersion", ""),
        info.get("containerRuntimeVersion", ""),
    ]


def _pod_row(pod: dict[str, Any]) -> list[Any]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    containers = spec.get("containers") or []
    ready = sum(1 for c in status.get("containerStatuses") or [] if c.get("ready"))
    phase = status.get("phase", "Pending")
    if phase == "Succeeded":
        phase = "Completed"
    elif (pod.get("metadata") or {}).get("deletionTimestamp"):
        phase = "Terminating"
    elif phase == "Running" and not pod_ready(pod) and ready < len(containers):
        phase = "Running"
    return [
        pod["metadata"]["name"],
        f"{ready}/{len(containers)}",
        phase,
        0,
        _age(pod),
        status.get("podIP", "<none>"),
        spec.get("nodeName", "<none>"),
        "<none>",
        "<none>",
    ]


def _deployment_row(deploy: dict[str, Any]) -> list[Any]:
    spec, status = deploy.get("spec") or {}, deploy.get("status") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    selector = ",".join(f"{k}={v}" for k, v in ((spec.get("selector") or {}).get("matchLabels") or {}).items())
    return [
        deploy["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        _age(deploy),
        ",".join(c.get("name", "") for c in containers),
        ",".join(c.get("image", "") for c in containers),
        selector,
    ]


def _seconds_between(start: str | None, end: str | None) -> str:
    if not start:
        return ""
    try:
        began = datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        ended = datetime.strptime(end, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) if end else datetime.now(UTC)
    except ValueError:
        return ""
    seconds = max(0, int((ended - began).total_seconds()))
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m"


def _job_row(job: dict[str, Any]) -> list[Any]:
    """kubectl's job columns: STATUS (Complete, Failed, Suspended, Running), COMPLETIONS, DURATION."""
    spec, status = job.get("spec") or {}, job.get("status") or {}
    state = "Running"
    for kind in ("Complete", "Failed"):
        if condition(job, kind) and (condition(job, kind) or {}).get("status") == "True":
            state = kind
    if state == "Running" and spec.get("suspend"):
        state = "Suspended"
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    return [
        job["metadata"]["name"],
        state,
        f"{status.get('succeeded', 0)}/{spec.get('completions', 1)}",
        _seconds_between(status.get("startTime"), status.get("completionTime")),
        _age(job),
        ",".join(c.get("name", "") for c in containers),
        ",".join(c.get("image", "") for c in containers),
        ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
    ]


COLUMNS: dict[str, tuple[list[dict[str, Any]], Any]] = {
    "nodes": (
        [
            _col("Name"),
            _col("Status"),
            _col("Roles"),
            _col("Age"),
            _col("Version"),
            _col("Internal-IP", priority=1),
            _col("External-IP", priority=1),
            _col("OS-Image", priority=1),
            _col("Kernel-Version", priority=1),
            _col("Container-Runtime", priority=1),
        ],
        _node_row,
    ),
    # The CRD's additionalPrinterColumns (Applying has priority 10: -o wide); no Age column, as for CRDs
    # that declare their own columns.
    "plans": (
        [
            _col("Name"),
            _col("Image"),
            _col("Channel"),
            _col("Version"),
            _col("Complete"),
            _col("Message"),
            _col("Applying", priority=10),
        ],
        plan_row,
    ),
    "jobs": (
        [
            _col("Name"),
            _col("Status"),
            _col("Completions"),
            _col("Duration"),
            _col("Age"),
            _col("Containers", priority=1),
            _col("Images", priority=1),
            _col("Selector", priority=1),
        ],
        _job_row,
    ),
    "pods": (
        [
            _col("Name"),
            _col("Ready"),
            _col("Status"),
            _col("Restarts", "integer"),
            _col("Age"),
            _col("IP", priority=1),
            _col("Node", priority=1),
            _col("Nominated Node", priority=1),
            _col("Readiness Gates", priority=1),
        ],
        _pod_row,
    ),
    "deployments": (
        [
            _col("Name"),
            _col("Ready"),
            _col("Up-to-date", "integer"),
            _col("Available", "integer"),
            _col("Age"),
            _col("Containers", priority=1),
            _col("Images", priority=1),
            _col("Selector", priority=1),
        ],
        _deployment_row,
    ),
}


def table(rt: ResourceType, objects: list[dict[str, Any]], resource_version: int) -> dict[str, Any]:
    columns, row = COLUMNS.get(rt.plural, ([_col("Name"), _col("Age")], lambda o: [o["metadata"]["name"], _age(o)]))
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": str(resource_version)},
        "columnDefinitions": columns,
        "rows": [{"cells": row(obj), "object": obj} for obj in objects],
    }
