"""The views and checks behind the scale and eviction subresources: a workload's `Scale`, and whether
a PodDisruptionBudget forbids evicting a pod now."""

from typing import Any

from simulator.errors import ApiError
from simulator.store import Store
from simulator.workloads import pdb_matches, pdb_status, pod_finished, pod_ready


def scale_view(obj: dict[str, Any]) -> dict[str, Any]:
    """The `autoscaling/v1` Scale of a workload object."""
    meta = obj["metadata"]
    selector = (obj.get("spec") or {}).get("selector") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")},
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
        "status": {
            "replicas": (obj.get("status") or {}).get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()),
        },
    }


def check_eviction(store: Store, namespace: str, pod: dict[str, Any]) -> None:
    """Raise the API server's 429 if a PodDisruptionBudget of `namespace` forbids evicting `pod` now."""
    if pod_finished(pod):
        return
    pods = store.load_all("pods", namespace)
    for pdb in store.load_all("poddisruptionbudgets", namespace):
        if not pdb_matches(pdb, pod):
            continue
        status = pdb_status(pdb, pods)
        blocked = (
            status["disruptionsAllowed"] <= 0
            if pod_ready(pod)
            else (status["currentHealthy"] < status["desiredHealthy"])
        )
        if blocked:
            # No Retry-After, as the API server sends none here: client-go would otherwise retry
            # the POST itself ten times before kubectl drain saw the 429.
            pdb_name = pdb["metadata"]["name"]
            raise ApiError(
                429,
                "Cannot evict pod as it would violate the pod's disruption budget.",
                details={
                    "causes": [
                        {
                            "reason": "DisruptionBudget",
                            "message": f"The disruption budget {pdb_name} needs {status['desiredHealthy']} "
                            f"healthy pods and has {status['currentHealthy']} currently",
                        }
                    ]
                },
            )
