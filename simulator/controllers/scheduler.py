"""The scheduler: binds each unscheduled pod to a Ready, schedulable node that matches its `nodeSelector` and
whose NoSchedule/NoExecute taints it tolerates, spreading pods by load (the fewest unfinished pods, then
the name); a pod that fits nowhere is marked Unschedulable, as `kubectl describe` shows it."""

from simulator.controllers.context import PODS, Context, Nodes, Obj, node_ready
from simulator.controllers.pod_status import conditions_true
from simulator.workloads import pod_finished, set_condition


def tolerates(pod_spec: Obj, taint: Obj) -> bool:
    for tol in pod_spec.get("tolerations") or []:
        if not isinstance(tol, dict):
            continue
        if tol.get("operator") == "Exists" and not tol.get("key"):
            return True
        if tol.get("key") == taint.get("key") and tol.get("effect") in (None, "", taint.get("effect")):
            if tol.get("operator") == "Exists" or tol.get("value", "") == taint.get("value", ""):
                return True
    return False


def fits(spec: Obj, node: Obj) -> bool:
    node_spec, labels = node.get("spec") or {}, node["metadata"].get("labels") or {}
    if not node_ready(node) or node_spec.get("unschedulable"):
        return False
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    return all(
        tolerates(spec, taint)
        for taint in node_spec.get("taints") or []
        if isinstance(taint, dict) and taint.get("effect") in ("NoSchedule", "NoExecute")
    )


class Scheduler:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def reconcile(self, nodes: Nodes) -> None:
        pods = self.ctx.load_all("pods")
        load: dict[str, int] = {name: 0 for name in nodes}
        for pod in pods:
            node = (pod.get("spec") or {}).get("nodeName")
            if node in load and not pod_finished(pod):
                load[node] += 1
        for pod in pods:
            spec = pod.get("spec") or {}
            if spec.get("nodeName") or pod_finished(pod) or pod["metadata"].get("deletionTimestamp"):
                continue
            candidates = [name for name, node in nodes.items() if fits(spec, node)]
            status = pod.setdefault("status", {})
            conditions: list[Obj] = list(status.get("conditions") or [])
            if not candidates:
                message = f"0/{len(nodes)} nodes are available: no Ready, schedulable node matches the pod."
                status["conditions"] = set_condition(conditions, "PodScheduled", "False", "Unschedulable", message)
            else:
                chosen = min(candidates, key=lambda name: (load[name], name))
                load[chosen] += 1
                spec["nodeName"] = chosen
                status["conditions"] = conditions_true(conditions, ("PodScheduled",))
            self.ctx.api.write(PODS, pod)
