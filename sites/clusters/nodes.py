"""Nodes: reading them (`NodeInfo`, their Lease renewals), labelling, cordoning, tainting and deleting
them, and draining one as `kubectl drain` does through the Eviction API (`DrainProgress`)."""

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s

from sites.clusters.client import ClusterClient
from sites.clusters.errors import ClusterNotFound, ClusterUnavailable

NODE_LEASE_NAMESPACE = "kube-node-lease"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


@dataclass(frozen=True)
class NodeInfo:
    name: str
    ready: bool | None  # None: the node stopped reporting (condition Unknown)
    unschedulable: bool
    labels: dict[str, str]
    taints: list[str]
    # The Ready condition: since when it has had this status (lastTransitionTime), the kubelet's last
    # status post (lastHeartbeatTime), and its reason and message. None when the node has no condition.
    ready_since: dt.datetime | None = None
    heartbeat_at: dt.datetime | None = None
    ready_reason: str = ""
    ready_message: str = ""

    @classmethod
    def of(cls, node: Any) -> "NodeInfo":
        ready: bool | None = False
        condition = next(
            (c for c in ((node.status.conditions if node.status else None) or []) if c.type == "Ready"), None
        )
        if condition is not None:
            ready = {"True": True, "False": False}.get(condition.status)
        spec = node.spec
        return cls(
            name=node.metadata.name,
            ready=ready,
            unschedulable=bool(spec and spec.unschedulable),
            labels=dict(node.metadata.labels or {}),
            taints=[f"{t.key}:{t.effect}" for t in ((spec.taints if spec else None) or [])],
            ready_since=condition.last_transition_time if condition is not None else None,
            heartbeat_at=condition.last_heartbeat_time if condition is not None else None,
            ready_reason=(condition.reason or "") if condition is not None else "",
            ready_message=(condition.message or "") if condition is not None else "",
        )


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    daemonset: bool
    mirror: bool
    finished: bool

    @classmethod
    def of(cls, pod: Any) -> "PodInfo":
        owners = pod.metadata.owner_references or []
        return cls(
            namespace=pod.metadata.namespace,
            name=pod.metadata.name,
            daemonset=any(o.kind == "DaemonSet" for o in owners),
            mirror=MIRROR_ANNOTATION in (pod.metadata.annotations or {}),
            finished=bool(pod.status and pod.status.phase in ("Succeeded", "Failed")),
        )


@dataclass
class DrainProgress:
    evicted: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # blocked pod -> why (names the disruption budget)

    @property
    def done(self) -> bool:
        """Nothing was left to evict on this pass (evicted pods may still be terminating; pass again)."""
        return not self.evicted and not self.blocked


class NodeOperations(ClusterClient):
    """A site's nodes and the pods on them."""

    def node(self, name: str) -> NodeInfo | None:
        """The node, or None when the cluster has no node of that name."""
        found = self._find(self._core.read_node, name)
        return None if found is None else NodeInfo.of(found)

    def nodes(self, label_selector: str | None = None) -> list[NodeInfo]:
        found = self._call(self._core.list_node, label_selector=label_selector)
        return [NodeInfo.of(item) for item in found.items]

    def node_leases(self) -> dict[str, dt.datetime]:
        """When each node's kubelet last renewed its Lease (`kube-node-lease`), by node name: one list call.
        A kubelet renews every 10 s; the node controller marks a node Unknown 40 s after renewals stop."""
        found = self._call(k8s.CoordinationV1Api(self.api_client).list_namespaced_lease, NODE_LEASE_NAMESPACE)
        return {
            item.metadata.name: item.spec.renew_time
            for item in found.items
            if item.spec is not None and item.spec.renew_time is not None
        }

    def label_node(self, name: str, labels: dict[str, str | None]) -> None:
        """Set (or, with None, remove) labels; a merge patch, so other labels stay."""
        self._call(self._core.patch_node, name, {"metadata": {"labels": labels}})

    def cordon(self, name: str) -> None:
        self._call(self._core.patch_node, name, {"spec": {"unschedulable": True}})

    def uncordon(self, name: str) -> None:
        self._call(self._core.patch_node, name, {"spec": {"unschedulable": None}})

    def taint(self, name: str, *, key: str, value: str = "", effect: str = "NoExecute") -> None:
        """Add a taint unless the node has it. The taint list is replaced as a whole, so the write is
        conditional on the resourceVersion read: a concurrent change makes it a 409 (try again)."""
        node = self._call(self._core.read_node, name)
        taints = [t.to_dict() for t in (node.spec.taints or [])]
        if any(t.get("key") == key and t.get("effect") == effect for t in taints):
            return
        taints.append({"key": key, "value": value, "effect": effect})
        patch = {"metadata": {"resourceVersion": node.metadata.resource_version}, "spec": {"taints": taints}}
        changed = f"node {name} changed while tainting it"
        self._if_unchanged(changed, self._core.patch_node, name, patch, _content_type="application/merge-patch+json")

    def delete_node(self, name: str) -> bool:
        """Delete the Node object; False when it was already gone (deleting twice is fine)."""
        return self._exists(self._core.delete_node, name)

    # --- draining ---------------------------------------------------------------------------------

    def pods_on_node(self, name: str) -> list[PodInfo]:
        found = self._call(self._core.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={name}")
        return [PodInfo.of(item) for item in found.items]

    def evict(self, namespace: str, name: str) -> str:
        """Ask the Eviction API to evict a pod: "evicted", "gone", or "blocked" (a disruption budget
        forbids it now, answered 429: wait and ask again)."""
        return self._evict(namespace, name)[0]

    def _evict(self, namespace: str, name: str) -> tuple[str, str]:
        """(outcome, why): `why` is the API server's reason for a blocked eviction (the budget named)."""
        body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": namespace}}
        try:
            self._call(self._core.create_namespaced_pod_eviction, name, namespace, body)
        except ClusterNotFound:
            return "gone", ""
        except ClusterUnavailable as exc:
            if exc.status == 429:
                return "blocked", str(exc)
            raise
        return "evicted", ""

    def drain(self, name: str) -> DrainProgress:
        """One pass of `kubectl drain`: evict every pod on the node except DaemonSet and mirror pods.
        Call again until `done`; a blocked eviction is retried on the next pass, never forced."""
        progress = DrainProgress()
        for pod in self.pods_on_node(name):
            if pod.daemonset or pod.mirror or pod.finished:
                continue
            outcome, why = self._evict(pod.namespace, pod.name)
            if outcome == "blocked":
                progress.blocked.append(f"{pod.namespace}/{pod.name}")
                progress.reasons[f"{pod.namespace}/{pod.name}"] = why
            elif outcome == "evicted":
                progress.evicted.append(f"{pod.namespace}/{pod.name}")
        return progress
