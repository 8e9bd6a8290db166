"""What a K3s upgrade is verified by, read from the site's cluster with the official client (through
sites.clusters.SiteCluster, its timeouts and error translation): every node's K3s version, readiness and
cordon; the system-upgrade-controller's Plans (upgrade.cattle.io/v1) with their status; the Deployments
that are Available; the PodDisruptionBudgets that allow no disruption now (what a waiting drain waits for).
"""

from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s

from sites.clusters import ClusterNotFound, NodeInfo, SiteCluster

UPGRADE_GROUP, UPGRADE_VERSION, PLANS = "upgrade.cattle.io", "v1", "plans"
UPGRADE_NAMESPACE = "system-upgrade"


@dataclass(frozen=True)
class NodeVersion:
    name: str
    kubelet_version: str
    ready: bool | None
    unschedulable: bool
    server: bool

    @classmethod
    def of(cls, node: Any) -> "NodeVersion":
        info = NodeInfo.of(node)
        node_info = node.status.node_info if node.status else None
        return cls(
            name=info.name,
            kubelet_version=(node_info.kubelet_version if node_info else "") or "",
            ready=info.ready,
            unschedulable=info.unschedulable,
            server="node-role.kubernetes.io/control-plane" in info.labels,
        )


@dataclass(frozen=True)
class PlanStatus:
    """A Plan's status as the system-upgrade-controller records it."""

    name: str
    version: str
    latest_version: str
    applying: tuple[str, ...]
    complete: bool | None  # the Complete condition (None: not yet)
    reason: str
    message: str

    @classmethod
    def of(cls, obj: dict[str, Any]) -> "PlanStatus":
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        complete = next((c for c in status.get("conditions") or [] if c.get("type") == "Complete"), None) or {}
        return cls(
            name=str((obj.get("metadata") or {}).get("name", "")),
            version=str(spec.get("version") or ""),
            latest_version=str(status.get("latestVersion") or ""),
            applying=tuple(str(n) for n in status.get("applying") or []),
            complete={"True": True, "False": False}.get(str(complete.get("status"))),
            reason=str(complete.get("reason") or ""),
            message=str(complete.get("message") or ""),
        )


def node_versions(cluster: SiteCluster) -> list[NodeVersion]:
    found = cluster._call(k8s.CoreV1Api(cluster.api_client).list_node)
    return [NodeVersion.of(item) for item in found.items]


def upgrade_plans(cluster: SiteCluster, namespace: str = UPGRADE_NAMESPACE) -> list[PlanStatus]:
    """The Plans in `namespace` (none when the CRD is not installed: the base stack brings it)."""
    api = k8s.CustomObjectsApi(cluster.api_client)
    try:
        found = cluster._call(api.list_namespaced_custom_object, UPGRADE_GROUP, UPGRADE_VERSION, namespace, PLANS)
    except ClusterNotFound:
        return []
    return [PlanStatus.of(item) for item in found.get("items") or []]


def available_deployments(cluster: SiteCluster) -> list[tuple[str, str]]:
    """(namespace, name) of every Deployment whose Available condition is True, across namespaces."""
    found = cluster._call(k8s.AppsV1Api(cluster.api_client).list_deployment_for_all_namespaces)
    available = []
    for item in found.items:
        conditions = (item.status.conditions if item.status else None) or []
        if any(c.type == "Available" and c.status == "True" for c in conditions):
            available.append((item.metadata.namespace, item.metadata.name))
    return sorted(available)


def blocking_budgets(cluster: SiteCluster) -> list[str]:
    """`namespace/name` of the PodDisruptionBudgets that allow no disruption now (a drain waits on them)."""
    found = cluster._call(k8s.PolicyV1Api(cluster.api_client).list_pod_disruption_budget_for_all_namespaces)
    return sorted(
        f"{item.metadata.namespace}/{item.metadata.name}"
        for item in found.items
        if item.status is not None and (item.status.disruptions_allowed or 0) <= 0 and item.status.expected_pods
    )
