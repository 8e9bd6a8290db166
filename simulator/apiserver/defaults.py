"""The defaults the API server fills in on create, per kind, for the fields clients and controllers read back."""

from collections.abc import Callable
from typing import Any

from simulator.resources import ResourceType


def apply_defaults(rt: ResourceType, obj: dict[str, Any], *, cluster_ip: Callable[[], str]) -> None:
    """Fill in `obj`'s defaults in place; `cluster_ip()` hands out the next Service address."""
    meta = obj["metadata"]
    spec: Any = obj.setdefault("spec", {}) if rt.has_status else obj.get("spec")
    if rt.kind == "Namespace":
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        spec.setdefault("finalizers", ["kubernetes"])
        obj["status"] = {"phase": "Active"}
    elif rt.kind == "Pod":
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        for container in spec.get("containers") or []:
            container.setdefault("imagePullPolicy", "IfNotPresent")
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    elif rt.kind == "Deployment":
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault("strategy", {"type": "RollingUpdate"})
        if spec["strategy"].get("type", "RollingUpdate") == "RollingUpdate":
            spec["strategy"].setdefault("rollingUpdate", {"maxUnavailable": "25%", "maxSurge": "25%"})
    elif rt.kind in ("ReplicaSet", "StatefulSet"):
        spec.setdefault("replicas", 1)
    elif rt.kind == "DaemonSet":
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}})
    elif rt.kind == "Job":
        uid = meta["uid"]
        spec.setdefault("parallelism", 1)
        spec.setdefault("completions", 1)
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        job_labels = {
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": meta["name"],
            "controller-uid": uid,
            "job-name": meta["name"],
        }
        if not spec.get("selector"):
            spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
            spec["manualSelector"] = False
        template_meta = spec["template"].setdefault("metadata", {})
        template_meta.setdefault("labels", {}).update(job_labels)
        meta.setdefault("labels", {}).update(
            {k: v for k, v in job_labels.items() if k.endswith("job-name") or k.endswith("controller-uid")}
        )
    elif rt.kind == "Service":
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec.get("clusterIP") != "None":
            spec["clusterIP"] = cluster_ip()
            spec["clusterIPs"] = [spec["clusterIP"]]
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
        obj["status"] = {"loadBalancer": {}}
    if rt.has_status and rt.kind not in ("Namespace", "Pod", "Service", "Node"):
        obj.setdefault("status", {})
    if spec == {} and not rt.has_status:
        obj.pop("spec", None)
