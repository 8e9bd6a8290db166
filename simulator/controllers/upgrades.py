"""The system-upgrade-controller: runs `Plan`s (upgrade.cattle.io/v1) as Rancher's controller does on K3s.

For each Plan: validate it (condition Validated), resolve its version (LatestResolved, `latestVersion`,
`latestHash`), select the nodes that still need it (nodeSelector, hostname label, plan label not at the
latest hash), `concurrency` at a time, into `status.applying`, and give each the Job
`apply-<plan>-on-<node>-with-<hash>` (simulator.upgrade_plans.job_for). The Job's pod is the upgrade
itself, in the order its containers run:

1. `prepare` (when the plan has one): the k3s-upgrade image's `prepare <plan>` waits until that other
   plan is Complete (so agents wait for the servers);
2. `cordon` (spec.unschedulable) or `drain`: cordon, then evict the node's pods through the Eviction API,
   except DaemonSet pods and the upgrade pods themselves. A 429 from a PodDisruptionBudget is waited out
   and retried every 5 s, as `kubectl drain` does; never forced past the budget;
3. `upgrade`: runs `job_seconds` (the fleet's --job-seconds), then the pod succeeds and the Job completes.

When the Job is Complete the node reports the plan's version (`status.nodeInfo.kubeletVersion` and
`kubeProxyVersion`; the site's /version follows its server node), gets the label
`plan.upgrade.cattle.io/<plan>=<hash>`, and is uncordoned; the next node is selected. When all are done
the Plan is Complete True and `applying` is empty. A Job that Failed (back-off limit, deadline) makes the
Plan Complete False/JobFailed "Job <ns>/<name> failed on Node <node>: <reason>: <message>", and its node
stays cordoned on its old version, as on a real cluster.

The pod's progress is held through `Context.job_gates` (Job uid -> "hold" or "fail"), which the kubelet
honours; the site's `upgrade_fault(node)` hook (faults `upgrade_fail`, `upgrade_hang`) decides failures.
"""

import copy
from typing import Any

from simulator.controllers.context import JOBS, Context, Nodes, Obj
from simulator.errors import ApiError
from simulator.resources import BY_PLURAL
from simulator.selectors import selector_from_label_selector
from simulator.upgrade_plans import (
    ERR_UNRESOLVABLE,
    LABEL_CONTROLLER,
    LABEL_PLAN,
    LABEL_VERSION,
    concurrent_nodes,
    job_for,
    job_name,
    job_state,
    latest_hash,
    munge_version,
    plan_label,
    validation_error,
)
from simulator.workloads import condition, controller_of, pod_finished, set_condition

NODES, PLANS = BY_PLURAL["nodes"], BY_PLURAL["plans"]
# kubectl drain retries an eviction refused by a disruption budget every 5 s.
DRAIN_RETRY_SECONDS = 5.0


def _complete(plan: Obj | None) -> bool:
    cond = condition(plan or {}, "Complete")
    return bool(cond and cond.get("status") == "True")


class PlanController:
    def __init__(self, ctx: Context, *, upgrade_seconds: float):
        self.ctx = ctx
        self.upgrade_seconds = upgrade_seconds
        # Job uid -> when its node was drained (monotonic): the upgrade runs from then.
        self.drained_at: dict[str, float] = {}
        # Job uid -> why its drain waits (the last eviction refused), for the Job's pod message.
        self.blocked: dict[str, str] = {}

    def reconcile(self, nodes: Nodes, now: float) -> None:
        ctx = self.ctx
        plans = [p for p in ctx.load_all("plans") if not p["metadata"].get("deletionTimestamp")]
        if not plans and not ctx.job_gates:
            return
        jobs = {
            (j["metadata"]["namespace"], j["metadata"]["name"]): j
            for j in ctx.load_all("jobs")
            if LABEL_CONTROLLER in (j["metadata"].get("labels") or {})
        }
        live: set[str] = set()
        for plan in plans:
            live |= self._sync(plan, nodes, jobs, now)
        for uid in list(ctx.job_gates):
            if uid not in live:
                self._forget(uid)

    def _forget(self, uid: str) -> None:
        self.ctx.job_gates.pop(uid, None)
        self.drained_at.pop(uid, None)
        self.blocked.pop(uid, None)

    # --- the plan -----------------------------------------------------------------------------------

    def _sync(self, plan: Obj, nodes: Nodes, jobs: dict[tuple[str, str], Obj], now: float) -> set[str]:
        spec = plan.get("spec") or {}
        status: Obj = copy.deepcopy(plan.get("status") or {})
        conds: list[Obj] = list(status.get("conditions") or [])
        live: set[str] = set()
        problem = validation_error(plan)
        if problem:
            status["conditions"] = set_condition(conds, "Validated", "False", "Error", problem)
            self.ctx.write_status(PLANS, plan, status)
            return live
        conds = set_condition(conds, "Validated", "True", "PlanIsValid", "")
        version = str(spec.get("version") or "")
        if not version:
            why = "channel resolution is not simulated" if spec.get("channel") else ERR_UNRESOLVABLE
            status["conditions"] = set_condition(conds, "LatestResolved", "False", "Error", why)
            self.ctx.write_status(PLANS, plan, status)
            return live
        latest = munge_version(version)
        if status.get("latestVersion") != latest:
            conds = set_condition(conds, "Complete", "False", "Resolved", "")
        conds = set_condition(conds, "LatestResolved", "True", "Version", "")
        hash_ = latest_hash(latest, str(spec.get("serviceAccountName") or ""))
        status.update(latestVersion=latest, latestHash=hash_)
        self._drop_stale_jobs(plan, jobs, latest)
        applying = concurrent_nodes(plan, list(nodes.values()), list(status.get("applying") or []), hash_)
        if not applying:
            status.pop("applying", None)
            conds = set_condition(conds, "Complete", "True", "Complete", "")
        else:
            if applying != status.get("applying"):
                status["applying"] = applying
                conds = set_condition(conds, "Complete", "False", "SyncJob", "")
            planned = {**plan, "status": {**status, "conditions": conds}}
            failures = []
            for name in applying:
                uid, failure = self._apply(planned, nodes[name], jobs, now)
                if uid:
                    live.add(uid)
                if failure:
                    failures.append(failure)
            if failures:
                conds = set_condition(conds, "Complete", "False", "JobFailed", "; ".join(failures))
            elif (condition({"status": {"conditions": conds}}, "Complete") or {}).get("reason") == "JobFailed":
                conds = set_condition(conds, "Complete", "False", "SyncJob", "")  # the failed Job was deleted
        status["conditions"] = conds
        self.ctx.write_status(PLANS, plan, status)
        return live

    def _drop_stale_jobs(self, plan: Obj, jobs: dict[tuple[str, str], Obj], latest: str) -> None:
        """Jobs of the plan for another version are deleted, as the controller's Job handler does."""
        meta = plan["metadata"]
        for job in list(jobs.values()):
            labels = job["metadata"].get("labels") or {}
            if job["metadata"]["namespace"] != meta["namespace"] or labels.get(LABEL_PLAN) != meta["name"]:
                continue
            if labels.get(LABEL_VERSION) != latest:
                self.ctx.delete(JOBS, job)
                self._forget(job["metadata"]["uid"])
                jobs.pop((job["metadata"]["namespace"], job["metadata"]["name"]), None)

    # --- one node -----------------------------------------------------------------------------------

    def _apply(self, plan: Obj, node: Obj, jobs: dict[tuple[str, str], Obj], now: float) -> tuple[str | None, str]:
        """Create or follow the node's Job: (its uid, the failure sentence when it failed)."""
        namespace = plan["metadata"]["namespace"]
        name = job_name(plan, node, plan["status"]["latestHash"])
        job = jobs.get((namespace, name))
        if job is None:
            created = self.ctx.create(JOBS, job_for(plan, node))
            if created is None:
                return None, ""
            uid = created["metadata"]["uid"]
            self.ctx.job_gates[uid] = "hold"
            self._run(plan, node, uid, now)
            return uid, ""
        uid = job["metadata"]["uid"]
        state, reason, message = job_state(job)
        if state == "complete":
            self._finish(plan, node)
            self._forget(uid)
            return None, ""
        if state == "failed":
            self._forget(uid)
            return None, f"Job {namespace}/{name} failed on Node {node['metadata']['name']}: {reason}: {message}"
        self._run(plan, node, uid, now)
        return uid, ""

    def _run(self, plan: Obj, node: Obj, uid: str, now: float) -> None:
        """Take the node's upgrade one step further: prepare, cordon/drain, then the upgrade's run."""
        ctx, spec = self.ctx, plan.get("spec") or {}
        gates = ctx.job_gates
        prepare = spec.get("prepare") or {}
        args = [str(a) for a in prepare.get("args") or []] if isinstance(prepare, dict) else []
        if len(args) >= 2 and args[0] == "prepare":
            if not _complete(ctx.store.load("plans", plan["metadata"]["namespace"], args[1])):
                gates[uid] = "hold"  # plans change status through the store: their write wakes the site
                return
        if uid not in self.drained_at:
            if spec.get("cordon") or spec.get("drain") is not None:
                self._cordon(node, True)
            if spec.get("drain") is not None:
                blocked = self._drain(plan, node)
                if blocked:
                    self.blocked[uid] = blocked
                    gates[uid] = "fail" if blocked.startswith("cannot delete") else "hold"
                    ctx.wake(now + DRAIN_RETRY_SECONDS)
                    return
            self.blocked.pop(uid, None)
            self.drained_at[uid] = now
        fault = ctx.upgrade_fault(node["metadata"]["name"])
        if fault:
            gates[uid] = "fail" if fault == "fail" else "hold"
            return
        done_at = self.drained_at[uid] + self.upgrade_seconds
        if now < done_at:
            gates[uid] = "hold"
            ctx.wake(done_at)
            return
        gates.pop(uid, None)  # the kubelet lets the upgrade pod succeed

    def _cordon(self, node: Obj, unschedulable: bool) -> None:
        spec = node.setdefault("spec", {})
        if bool(spec.get("unschedulable")) == unschedulable:
            return
        if unschedulable:
            spec["unschedulable"] = True
        else:
            spec.pop("unschedulable", None)
        self.ctx.api.write(NODES, node)

    def _drain(self, plan: Obj, node: Obj) -> str:
        """One pass of `kubectl drain`: evict what may go; why the drain must wait ("" when it is done)."""
        drain = (plan.get("spec") or {}).get("drain") or {}
        node_name = node["metadata"]["name"]
        selector = drain.get("podSelector")
        matches = selector_from_label_selector(selector) if isinstance(selector, dict) else None
        blocked = ""
        for pod in self.ctx.load_all("pods"):
            meta = pod["metadata"]
            if (pod.get("spec") or {}).get("nodeName") != node_name or pod_finished(pod):
                continue
            labels = meta.get("labels") or {}
            owner = controller_of(pod)
            if LABEL_CONTROLLER in labels or (matches is not None and not matches(labels)):
                continue
            if owner and owner.get("kind") == "DaemonSet" and drain.get("ignoreDaemonSets", True):
                continue
            if not owner and not drain.get("force"):
                return (
                    "cannot delete Pods that declare no controller (use --force to override): "
                    f"{meta['namespace']}/{meta['name']}"
                )
            if drain.get("disableEviction"):
                self.ctx.delete(BY_PLURAL["pods"], pod)
                continue
            body: dict[str, Any] = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": meta["name"]}}
            try:
                self.ctx.api.evict(meta["namespace"], meta["name"], body, dry_run=False)
            except ApiError as exc:
                if exc.code == 429:
                    blocked = f"evicting pod {meta['namespace']}/{meta['name']}: {exc.message}"
        return blocked

    def _finish(self, plan: Obj, node: Obj) -> None:
        """The Job completed: the node runs the plan's version, carries its hash, and is uncordoned."""
        spec, status = plan.get("spec") or {}, plan["status"]
        meta = node["metadata"]
        meta.setdefault("labels", {})[plan_label(plan["metadata"]["name"])] = status["latestHash"]
        info = node.setdefault("status", {}).setdefault("nodeInfo", {})
        info["kubeletVersion"] = info["kubeProxyVersion"] = str(spec.get("version"))
        if spec.get("cordon") or spec.get("drain") is not None:
            node.setdefault("spec", {}).pop("unschedulable", None)
        self.ctx.api.write(NODES, node)
