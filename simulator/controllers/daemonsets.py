"""The DaemonSet controller: one pod per node that matches the template's `nodeSelector` (cordoned and
NotReady nodes too: the pods are bound to their node, not scheduled), replaced when the template changes,
and the status `kubectl rollout status daemonset/x` reads (`simulator.workload_status`)."""

from simulator.controllers.context import DAEMONSETS, PODS, Context, Nodes, Observed, pod_from_template, template_hash
from simulator.workload_status import daemonset_status
from simulator.workloads import owned_by

REVISION_LABEL = "controller-revision-hash"
# What the DaemonSet controller adds to its pods, so they stay on cordoned and failing nodes.
TOLERATIONS = (
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
)


class DaemonSetController:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        # This pass: the number of nodes each DaemonSet (by uid) should run on, for its status.
        self._desired: dict[str, int] = {}

    def reconcile(self, nodes: Nodes) -> None:
        ctx = self.ctx
        self._desired = {}
        pods = ctx.load_all("pods")
        for ds in ctx.load_all("daemonsets"):
            meta, spec = ds["metadata"], ds.get("spec") or {}
            template = spec.get("template") or {}
            digest = template_hash(template)
            node_selector = (template.get("spec") or {}).get("nodeSelector") or {}
            eligible = {
                name
                for name, node in nodes.items()
                if all(node["metadata"].get("labels", {}).get(k) == v for k, v in node_selector.items())
            }
            self._desired[meta["uid"]] = len(eligible)
            covered = set()
            for pod in (p for p in pods if owned_by(p, meta["uid"])):
                node = (pod.get("spec") or {}).get("nodeName")
                stale = pod["metadata"].get("labels", {}).get(REVISION_LABEL) != digest
                if node not in eligible or node in covered or stale:
                    ctx.delete(PODS, pod)
                else:
                    covered.add(node)
            for node in sorted(eligible - covered):
                pod = pod_from_template(ds, template, meta["name"], node=node)
                pod["metadata"]["labels"][REVISION_LABEL] = digest
                pod["spec"].setdefault("tolerations", []).extend(dict(t) for t in TOLERATIONS)
                ctx.create(PODS, pod)

    def report(self, seen: Observed) -> None:
        for ds in self.ctx.load_all("daemonsets"):
            uid = ds["metadata"]["uid"]
            mine = [p for p in seen.pods if owned_by(p, uid)]
            status, wake = daemonset_status(
                ds,
                desired=self._desired.get(uid, len(mine)),
                pods=mine,
                revision=template_hash((ds.get("spec") or {}).get("template") or {}),
                now=seen.now,
            )
            self.ctx.wake_wall(wake)
            self.ctx.write_status(DAEMONSETS, ds, status)
