"""The ReplicaSet controller: keeps each ReplicaSet's pod count (creating pods from its template, deleting the
least useful first) and reports its replicas, ready and available (with `minReadySeconds`) counts."""

from simulator.controllers.context import PODS, REPLICASETS, Context, Observed, pod_from_template
from simulator.workload_status import pod_available
from simulator.workloads import owned_by, pod_finished, pod_ready


class ReplicaSetController:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def reconcile(self) -> None:
        ctx = self.ctx
        pods = ctx.load_all("pods")
        for rs in ctx.load_all("replicasets"):
            meta, spec = rs["metadata"], rs.get("spec") or {}
            mine = [p for p in pods if owned_by(p, meta["uid"]) and not pod_finished(p)]
            wanted = int(spec.get("replicas", 1))
            for _ in range(wanted - len(mine)):
                ctx.create(PODS, pod_from_template(rs, spec.get("template") or {}, meta["name"]))
            if len(mine) > wanted:
                # Delete the least useful first: unscheduled, then not ready, then the newest.
                mine.sort(
                    key=lambda p: (
                        bool((p.get("spec") or {}).get("nodeName")),
                        pod_ready(p),
                        p["metadata"].get("creationTimestamp", ""),
                    )
                )
                for pod in mine[: len(mine) - wanted]:
                    ctx.delete(PODS, pod)

    def report(self, seen: Observed) -> None:
        for rs in seen.replicasets:
            mine = seen.by_replicaset.get(rs["metadata"]["uid"], [])
            ready = sum(1 for p in mine if pod_ready(p))
            min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
            available = sum(1 for p in mine if pod_available(p, min_ready, seen.now)[0])
            status = {
                "replicas": len(mine),
                "fullyLabeledReplicas": len(mine),
                "readyReplicas": ready,
                "availableReplicas": available,
                "observedGeneration": rs["metadata"].get("generation", 1),
            }
            status = {k: v for k, v in status.items() if v or k in ("replicas", "observedGeneration")}
            self.ctx.write_status(REPLICASETS, rs, status)
