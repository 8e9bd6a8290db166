"""The controllers that make a site's objects behave: Deployment -> ReplicaSet -> Pods, DaemonSets, Jobs,
the scheduler, a kubelet per node (pod start with its environment, readiness, job completion), garbage
collection of pods and of Secrets owned by Jobs, and PodDisruptionBudget status.

They are event-driven: a site runs `Controllers.reconcile()` when one of its objects changed (coalesced,
see `simulator.site`) or when a timer it asked for is due (a pod finishing its start, a Job finishing its
run). An idle site costs nothing. Every write is skipped when it would not change the object, so a
reconcile pass that finds the world as it should be writes nothing and the site goes quiet.
"""

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from simulator import podfaults
from simulator.apiserver import ApiServer, random_suffix
from simulator.errors import ApiError
from simulator.resources import BY_PLURAL
from simulator.store import now_iso
from simulator.workload_status import daemonset_status, deployment_status, pod_available
from simulator.workloads import (
    EnvUnresolved,
    condition,
    container_env,
    controller_of,
    owned_by,
    owner_reference,
    pdb_status,
    pod_finished,
    pod_ready,
)
from simulator.workloads import set_condition as _set_condition

PODS, REPLICASETS, DEPLOYMENTS = BY_PLURAL["pods"], BY_PLURAL["replicasets"], BY_PLURAL["deployments"]
DAEMONSETS, JOBS, PDBS, NODES = (
    BY_PLURAL["daemonsets"],
    BY_PLURAL["jobs"],
    BY_PLURAL["poddisruptionbudgets"],
    BY_PLURAL["nodes"],
)
SECRETS = BY_PLURAL["secrets"]
OWNER_KINDS = frozenset({"ReplicaSet", "DaemonSet", "Job", "StatefulSet"})  # the owners GC knows of
K3S_VERSION = "v1.31.4+k3s1"
TEMPLATE_HASH = "pod-template-hash"


def node_ready(node: dict[str, Any]) -> bool:
    cond = condition(node, "Ready")
    return bool(cond and cond.get("status") == "True")


def template_hash(template: Any) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    # Pod-template hashes avoid vowels and look like "7d9f8c6b5"; any stable short string works.
    return "".join("bcdfghjklmnpqrstvwxz2456789"[int(c, 16) % 27] for c in digest[:10])


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _tolerates(pod_spec: dict[str, Any], taint: dict[str, Any]) -> bool:
    for tol in pod_spec.get("tolerations") or []:
        if not isinstance(tol, dict):
            continue
        if tol.get("operator") == "Exists" and not tol.get("key"):
            return True
        if tol.get("key") == taint.get("key") and tol.get("effect") in (None, "", taint.get("effect")):
            if tol.get("operator") == "Exists" or tol.get("value", "") == taint.get("value", ""):
                return True
    return False


class Controllers:
    """All controllers of one site. Hooks connect them to the rest of the simulated site:

    - `pod_fault(pod)`: what a fault does to this workload pod: None (nothing), "unavailable" (it
      runs but never becomes ready), "crashloop" (its containers exit and are restarted with a
      growing back-off: CrashLoopBackOff) or "image_pull" (its image cannot be pulled: ErrImagePull,
      then ImagePullBackOff);
    - `job_finished(job, pod, env)`: a Job pod ran to completion on its node with this environment (its
      literal values and what its Secret and ConfigMap references resolved to): log it, obey a wipe;
    - `wake_at(monotonic_time)`: run `reconcile` again then.
    """

    def __init__(
        self,
        api: ApiServer,
        *,
        pod_start_seconds: float,
        job_seconds: float,
        pod_fault: Callable[[dict[str, Any]], str | None],
        job_finished: Callable[[dict[str, Any], dict[str, Any], dict[str, str]], None],
        wake_at: Callable[[float], None],
    ):
        self.api = api
        self.store = api.store
        self.pod_start_seconds = pod_start_seconds
        self.job_seconds = job_seconds
        self.pod_fault = pod_fault
        self.job_finished = job_finished
        self.wake_at = wake_at
        # Monotonic times the simulated kubelet keeps about pods; not part of the API objects.
        self.bound_at: dict[str, float] = {}
        self.running_at: dict[str, float] = {}
        self.job_started: dict[str, float] = {}
        # The environment a Job pod's process got at its start (a kubelet resolves Secret references
        # then; the Secret may be deleted later). Kept for Job pods only: devices read it when one ends.
        self.job_env: dict[str, dict[str, str]] = {}
        # A crash-looping pod's next restart (monotonic), by uid: the back-off doubles up to 5 minutes.
        self.crash_restart_at: dict[str, float] = {}
        # Per pass: the ReplicaSets created in it (a Deployment's new rollout starts) and the number of
        # nodes each DaemonSet should run on.
        self._created: set[str] = set()
        self._ds_desired: dict[str, int] = {}
        self._next_wake: float | None = None
        # Parsed objects of the current pass, by stored version: a pass reads pods in several steps, and
        # parsing JSON is most of its cost. A write makes a new stored version, so edits are never stale.
        self._parsed: dict[int, tuple[Any, dict[str, Any]]] = {}

    # --- entry point --------------------------------------------------------------------------------

    def reconcile(self) -> None:
        self._next_wake = None
        self._parsed = {}
        self._created = set()
        self._ds_desired = {}
        try:
            self._reconcile()
        finally:
            self._parsed = {}  # 3000 sites keeping their last pass parsed would triple the memory

    def _reconcile(self) -> None:
        now = time.monotonic()
        nodes = {n["metadata"]["name"]: n for n in self._load_all("nodes")}
        self._collect_orphans(nodes)
        self._deployments()
        self._replicasets()
        self._daemonsets(nodes)
        self._jobs(now)
        self._schedule(nodes)
        self._kubelet(nodes, now)
        self._statuses()
        if self._next_wake is not None:
            self.wake_at(self._next_wake)

    def _load_all(self, plural: str) -> list[dict[str, Any]]:
        found = []
        for stored in self.store.scan(plural):
            cached = self._parsed.get(id(stored))
            if cached is None or cached[0] is not stored:
                cached = (stored, stored.load())
                self._parsed[id(stored)] = cached
            found.append(cached[1])
        return found

    def _wake(self, at: float) -> None:
        if self._next_wake is None or at < self._next_wake:
            self._next_wake = at

    def _wake_wall(self, at: float | None) -> None:
        """Wake at a wall-clock time (status timestamps are wall clock; timers are monotonic)."""
        if at is not None:
            self._wake(time.monotonic() + max(0.0, at - time.time()))

    def _create(self, rt: Any, obj: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self.api.create(rt, obj["metadata"].get("namespace"), obj)
        except ApiError:
            return None  # e.g. the namespace is being deleted; the next pass sees the new world

    def _delete(self, rt: Any, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        try:
            self.api.delete(rt, meta.get("namespace", ""), meta["name"])
        except ApiError:
            pass

    # --- pods without a home ------------------------------------------------------------------------

    def _collect_orphans(self, nodes: dict[str, Any]) -> None:
        """GC: pods bound to a node that no longer exists, pods whose controller is gone, and Secrets all of
        whose owners (of the kinds below) are gone, e.g. a Job's Secret when the Job is deleted."""
        owners = {
            obj["metadata"]["uid"]
            for plural in ("replicasets", "daemonsets", "jobs", "statefulsets")
            for obj in self._load_all(plural)
        }
        for pod in self._load_all("pods"):
            node = (pod.get("spec") or {}).get("nodeName")
            ref = controller_of(pod)
            if (node and node not in nodes) or (ref and ref.get("uid") not in owners):
                self._delete(PODS, pod)
                uid = pod["metadata"]["uid"]
                self.bound_at.pop(uid, None)
                self.running_at.pop(uid, None)
                self.job_env.pop(uid, None)
                self.crash_restart_at.pop(uid, None)
        for secret in self._load_all("secrets"):
            refs = secret["metadata"].get("ownerReferences") or []
            if refs and all(r.get("kind") in OWNER_KINDS and r.get("uid") not in owners for r in refs):
                self._delete(SECRETS, secret)

    # --- Deployment -> ReplicaSet -------------------------------------------------------------------

    def _deployments(self) -> None:
        replicasets = self._load_all("replicasets")
        for deploy in self._load_all("deployments"):
            meta, spec = deploy["metadata"], deploy.get("spec") or {}
            template = spec.get("template") or {}
            digest = template_hash(template)
            name = f"{meta['name']}-{digest}"
            owned = [rs for rs in replicasets if owned_by(rs, meta["uid"])]
            replicas = int(spec.get("replicas", 1))
            current = next((rs for rs in owned if rs["metadata"]["name"] == name), None)
            if current is None:
                labels = {**((template.get("metadata") or {}).get("labels") or {}), TEMPLATE_HASH: digest}
                selector = json.loads(json.dumps(spec.get("selector") or {}))
                selector.setdefault("matchLabels", {})[TEMPLATE_HASH] = digest
                pod_template = json.loads(json.dumps(template))
                pod_template.setdefault("metadata", {})["labels"] = labels
                revision = 1 + max(
                    (
                        int(rs["metadata"].get("annotations", {}).get("deployment.kubernetes.io/revision", 0))
                        for rs in owned
                    ),
                    default=0,
                )
                rs_spec = {"replicas": replicas, "selector": selector, "template": pod_template}
                if spec.get("minReadySeconds"):
                    rs_spec["minReadySeconds"] = spec["minReadySeconds"]
                made = self._create(
                    REPLICASETS,
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "metadata": {
                            "name": name,
                            "namespace": meta["namespace"],
                            "labels": labels,
                            "annotations": {"deployment.kubernetes.io/revision": str(revision)},
                            "ownerReferences": [owner_reference(deploy)],
                        },
                        "spec": rs_spec,
                    },
                )
                if made is not None:
                    self._created.add(f"{meta['namespace']}/{name}")
            elif current["spec"].get("replicas") != replicas:
                current["spec"]["replicas"] = replicas
                self.api.write(REPLICASETS, current)
            # The simulator rolls over at once: old ReplicaSets go to zero as the new one is created.
            for old in owned:
                if old["metadata"]["name"] != name and old["spec"].get("replicas", 0) != 0:
                    old["spec"]["replicas"] = 0
                    self.api.write(REPLICASETS, old)

    def _replicasets(self) -> None:
        pods = self._load_all("pods")
        for rs in self._load_all("replicasets"):
            meta, spec = rs["metadata"], rs.get("spec") or {}
            mine = [p for p in pods if owned_by(p, meta["uid"]) and not pod_finished(p)]
            wanted = int(spec.get("replicas", 1))
            for _ in range(wanted - len(mine)):
                self._create(PODS, self._pod_from_template(rs, spec.get("template") or {}, meta["name"]))
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
                    self._delete(PODS, pod)

    def _pod_from_template(
        self, owner: dict[str, Any], template: dict[str, Any], prefix: str, node: str | None = None
    ) -> dict[str, Any]:
        template_meta = template.get("metadata") or {}
        spec = json.loads(json.dumps(template.get("spec") or {}))
        if node:
            spec["nodeName"] = node
        pod_meta: dict[str, Any] = {
            "name": f"{prefix}-{random_suffix()}",
            "namespace": owner["metadata"]["namespace"],
            "labels": dict(template_meta.get("labels") or {}),
            "ownerReferences": [owner_reference(owner)],
        }
        if template_meta.get("annotations"):
            pod_meta["annotations"] = dict(template_meta["annotations"])
        return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}

    # --- DaemonSets ---------------------------------------------------------------------------------

    def _daemonsets(self, nodes: dict[str, Any]) -> None:
        pods = self._load_all("pods")
        for ds in self._load_all("daemonsets"):
            meta, spec = ds["metadata"], ds.get("spec") or {}
            template = spec.get("template") or {}
            digest = template_hash(template)
            node_selector = (template.get("spec") or {}).get("nodeSelector") or {}
            eligible = {
                name
                for name, node in nodes.items()
                if all(node["metadata"].get("labels", {}).get(k) == v for k, v in node_selector.items())
            }
            self._ds_desired[meta["uid"]] = len(eligible)
            mine = [p for p in pods if owned_by(p, meta["uid"])]
            covered = set()
            for pod in mine:
                node = (pod.get("spec") or {}).get("nodeName")
                stale = pod["metadata"].get("labels", {}).get("controller-revision-hash") != digest
                if node not in eligible or node in covered or stale:
                    self._delete(PODS, pod)
                else:
                    covered.add(node)
            for node in sorted(eligible - covered):
                pod = self._pod_from_template(ds, template, meta["name"], node=node)
                pod["metadata"]["labels"]["controller-revision-hash"] = digest
                pod["spec"].setdefault("tolerations", []).extend(
                    [
                        {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
                        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
                        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
                    ]
                )
                self._create(PODS, pod)

    # --- Jobs ---------------------------------------------------------------------------------------

    def _jobs(self, now: float) -> None:
        pods = self._load_all("pods")
        for job in self._load_all("jobs"):
            meta, spec = job["metadata"], job.get("spec") or {}
            status = job.setdefault("status", {})
            if any(
                c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                for c in status.get("conditions") or []
            ):
                continue
            uid = meta["uid"]
            started = self.job_started.setdefault(uid, now)
            mine = [p for p in pods if owned_by(p, uid)]
            succeeded = sum(1 for p in mine if p.get("status", {}).get("phase") == "Succeeded")
            failed = sum(1 for p in mine if p.get("status", {}).get("phase") == "Failed")
            active = [p for p in mine if not pod_finished(p)]
            completions = int(spec.get("completions") or 1)
            status.setdefault("startTime", now_iso())
            deadline = spec.get("activeDeadlineSeconds")
            conditions = list(status.get("conditions") or [])
            if succeeded >= completions:
                for pod in active:
                    self._delete(PODS, pod)
                conditions = _set_condition(
                    conditions,
                    "SuccessCriteriaMet",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                )
                conditions = _set_condition(
                    conditions, "Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods"
                )
                status.update(completionTime=now_iso(), active=0, ready=0, terminating=0)
                self.job_started.pop(uid, None)
            elif isinstance(deadline, int) and now - started >= deadline:
                for pod in active:
                    self._delete(PODS, pod)
                conditions = _set_condition(
                    conditions,
                    "FailureTarget",
                    "True",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                )
                conditions = _set_condition(
                    conditions, "Failed", "True", "DeadlineExceeded", "Job was active longer than specified deadline"
                )
                status.update(active=0, ready=0)
                self.job_started.pop(uid, None)
            elif failed > int(spec.get("backoffLimit", 6)):
                conditions = _set_condition(
                    conditions, "Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit"
                )
                status.update(active=0)
            else:
                if isinstance(deadline, int):
                    self._wake(started + deadline)
                wanted = min(int(spec.get("parallelism") or 1), completions - succeeded) - len(active)
                if not spec.get("suspend"):
                    for _ in range(max(0, wanted)):
                        self._create(PODS, self._pod_from_template(job, spec.get("template") or {}, meta["name"]))
                status["active"] = len(active) + max(0, wanted)
                status["ready"] = sum(1 for p in active if pod_ready(p))
            status["succeeded"], status["failed"] = succeeded, failed
            if not status["failed"]:
                status.pop("failed")
            if conditions:
                status["conditions"] = conditions
            status.setdefault("uncountedTerminatedPods", {})
            self.api.write(JOBS, job)

    # --- scheduler ----------------------------------------------------------------------------------

    def _schedule(self, nodes: dict[str, Any]) -> None:
        pods = self._load_all("pods")
        load: dict[str, int] = {name: 0 for name in nodes}
        for pod in pods:
            node = (pod.get("spec") or {}).get("nodeName")
            if node in load and not pod_finished(pod):
                load[node] += 1
        for pod in pods:
            spec = pod.get("spec") or {}
            if spec.get("nodeName") or pod_finished(pod) or pod["metadata"].get("deletionTimestamp"):
                continue
            candidates = [name for name, node in nodes.items() if self._fits(spec, node)]
            status = pod.setdefault("status", {})
            if not candidates:
                message = f"0/{len(nodes)} nodes are available: no Ready, schedulable node matches the pod."
                status["conditions"] = _set_condition(
                    list(status.get("conditions") or []), "PodScheduled", "False", "Unschedulable", message
                )
                self.api.write(PODS, pod)
                continue
            chosen = min(candidates, key=lambda name: (load[name], name))
            load[chosen] += 1
            spec["nodeName"] = chosen
            status["conditions"] = _set_condition(list(status.get("conditions") or []), "PodScheduled", "True", "", "")
            for cond in status["conditions"]:
                if cond["type"] == "PodScheduled":
                    cond.pop("reason", None)
                    cond.pop("message", None)
            self.api.write(PODS, pod)

    @staticmethod
    def _fits(spec: dict[str, Any], node: dict[str, Any]) -> bool:
        node_spec, labels = node.get("spec") or {}, node["metadata"].get("labels") or {}
        if not node_ready(node) or node_spec.get("unschedulable"):
            return False
        if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
            return False
        return all(
            _tolerates(spec, taint)
            for taint in node_spec.get("taints") or []
            if isinstance(taint, dict) and taint.get("effect") in ("NoSchedule", "NoExecute")
        )

    # --- kubelet ------------------------------------------------------------------------------------

    def _kubelet(self, nodes: dict[str, Any], now: float) -> None:
        for pod in self._load_all("pods"):
            spec, status = pod.get("spec") or {}, pod.setdefault("status", {})
            node_name = spec.get("nodeName")
            if not node_name or pod_finished(pod):
                continue
            uid = pod["metadata"]["uid"]
            node = nodes.get(node_name)
            alive = node is not None and node_ready(node)
            bound = self.bound_at.setdefault(uid, now)
            phase = status.get("phase", "Pending")
            fault = self.pod_fault(pod) if alive else None
            if phase == "Pending":
                if not alive:
                    continue
                if now < bound + self.pod_start_seconds:
                    self._wake(bound + self.pod_start_seconds)
                    continue
                if fault == "image_pull":
                    if self._pull_fails(pod, node, bound, now):
                        self.api.write(PODS, pod)
                    continue
                try:
                    resolved = container_env(pod, self.store.load)
                except EnvUnresolved as exc:
                    # As a kubelet: wait for the Secret/ConfigMap (a new Secret wakes the site), never fail.
                    if self._waiting(pod, "CreateContainerConfigError", str(exc)):
                        self.api.write(PODS, pod)
                    continue
                self._start(pod, node)
                self.running_at[uid] = now
                if (controller_of(pod) or {}).get("kind") == "Job":
                    self.job_env[uid] = {k: v for values in resolved.values() for k, v in values.items()}
            started = self.running_at.setdefault(uid, now)
            is_job = (controller_of(pod) or {}).get("kind") == "Job"
            if is_job and alive:
                if now >= started + self.job_seconds:
                    self._complete(pod)
                    self.api.write(PODS, pod)
                    job_ref = controller_of(pod) or {}
                    job = self.store.load("jobs", pod["metadata"]["namespace"], job_ref.get("name", ""))
                    env = self.job_env.pop(uid, {})
                    if job is not None:
                        self.job_finished(job, pod, env)
                    continue
                self._wake(started + self.job_seconds)
            if fault == "crashloop":
                if self._crash(pod, uid, now):
                    self.api.write(PODS, pod)
                continue
            recovered = self._recover(pod, uid)
            ready = alive and fault in (None, "image_pull")  # an image already pulled stays pulled
            if ready != pod_ready(pod) or phase == "Pending" or recovered:
                self._set_ready(pod, ready)
                self.api.write(PODS, pod)

    def _pull_fails(self, pod: dict[str, Any], node: dict[str, Any] | None, bound: float, now: float) -> bool:
        """ErrImagePull on the first try, ImagePullBackOff once the kubelet backs off (one pod start later)."""
        backing_off = now >= bound + 2 * self.pod_start_seconds
        if not backing_off:
            self._wake(bound + 2 * self.pod_start_seconds)
        return podfaults.image_pull_fails(pod, node, backing_off=backing_off)

    def _crash(self, pod: dict[str, Any], uid: str, now: float) -> bool:
        """Restart the crashing containers when their back-off is over; until then nothing changes."""
        due = self.crash_restart_at.get(uid)
        if due is not None and now < due and podfaults.waiting_reason(pod) == podfaults.CRASH_LOOP:
            self._wake(due)
            return False
        backoff = podfaults.crash(pod)
        self.crash_restart_at[uid] = now + backoff
        self._wake(now + backoff)
        return True

    def _recover(self, pod: dict[str, Any], uid: str) -> bool:
        """A crash-looping pod whose fault is gone: its containers run again (restarts are kept)."""
        if self.crash_restart_at.pop(uid, None) is None and podfaults.waiting_reason(pod) != podfaults.CRASH_LOOP:
            return False
        podfaults.run_again(pod)
        return True

    def _start(self, pod: dict[str, Any], node: dict[str, Any] | None) -> None:
        spec, status = pod["spec"], pod["status"]
        addresses = (node or {}).get("status", {}).get("addresses") or []
        host_ip = next((a["address"] for a in addresses if a.get("type") == "InternalIP"), "10.0.0.1")
        pod_ip = f"10.42.{sum(map(ord, spec['nodeName'])) % 250}.{sum(map(ord, pod['metadata']['uid'])) % 250 + 2}"
        status.update(
            phase="Running",
            hostIP=host_ip,
            hostIPs=[{"ip": host_ip}],
            podIP=pod_ip,
            podIPs=[{"ip": pod_ip}],
            startTime=now_iso(),
        )
        conditions = list(status.get("conditions") or [])
        for kind in ("PodReadyToStartContainers", "Initialized", "PodScheduled"):
            conditions = _set_condition(conditions, kind, "True", "", "")
        for cond in conditions:
            cond.pop("reason", None)
            cond.pop("message", None)
        status["conditions"] = conditions
        status["containerStatuses"] = [
            {
                "name": c.get("name", "main"),
                "image": c.get("image", ""),
                "imageID": f"docker.io/{c.get('image', '')}@sha256:{_digest(str(c.get('image')))}",
                "containerID": f"containerd://{_digest(pod['metadata']['uid'] + str(i))}",
                "ready": False,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": now_iso()}},
            }
            for i, c in enumerate(spec.get("containers") or [])
        ]

    @staticmethod
    def _waiting(pod: dict[str, Any], reason: str, message: str) -> bool:
        """Mark the pod's containers waiting for `reason`; False when they already are (nothing to write)."""
        spec, status = pod.get("spec") or {}, pod.setdefault("status", {})
        waiting = {"waiting": {"reason": reason, "message": message}}
        statuses = [
            {"name": c.get("name", "main"), "image": c.get("image", ""), "imageID": "", "ready": False,
             "started": False, "restartCount": 0, "state": waiting}
            for c in spec.get("containers") or []
        ]  # fmt: skip
        if status.get("containerStatuses") == statuses:
            return False
        status["containerStatuses"] = statuses
        return True

    @staticmethod
    def _set_ready(pod: dict[str, Any], ready: bool) -> None:
        status = pod["status"]
        value = "True" if ready else "False"
        reason = "" if ready else "ContainersNotReady"
        message = "" if ready else "containers with unready status"
        conditions = list(status.get("conditions") or [])
        for kind in ("ContainersReady", "Ready"):
            conditions = _set_condition(conditions, kind, value, reason, message)
        for cond in conditions:
            if cond["type"] in ("ContainersReady", "Ready") and ready:
                cond.pop("reason", None)
                cond.pop("message", None)
        status["conditions"] = conditions
        for container in status.get("containerStatuses") or []:
            container["ready"] = ready

    @staticmethod
    def _complete(pod: dict[str, Any]) -> None:
        status = pod["status"]
        status["phase"] = "Succeeded"
        conditions = list(status.get("conditions") or [])
        for kind in ("ContainersReady", "Ready"):
            conditions = _set_condition(conditions, kind, "False", "PodCompleted", "")
        status["conditions"] = conditions
        for container in status.get("containerStatuses") or []:
            started = (container.get("state") or {}).get("running", {}).get("startedAt", now_iso())
            container.update(
                ready=False,
                started=False,
                state={
                    "terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": now_iso()}
                },
            )

    # --- statuses -----------------------------------------------------------------------------------

    def _statuses(self) -> None:
        now = time.time()  # status timestamps and minReadySeconds are wall clock, as in Kubernetes
        pods = [p for p in self._load_all("pods") if not p["metadata"].get("deletionTimestamp")]
        replicasets = self._load_all("replicasets")
        rs_pods: dict[str, list[dict[str, Any]]] = {}
        for pod in pods:
            ref = controller_of(pod)
            if ref and ref.get("kind") == "ReplicaSet" and not pod_finished(pod):
                rs_pods.setdefault(ref["uid"], []).append(pod)
        for rs in replicasets:
            mine = rs_pods.get(rs["metadata"]["uid"], [])
            ready = sum(1 for p in mine if pod_ready(p))
            min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
            available = sum(1 for p in mine if pod_available(p, min_ready, now)[0])
            status = {
                "replicas": len(mine),
                "fullyLabeledReplicas": len(mine),
                "readyReplicas": ready,
                "availableReplicas": available,
                "observedGeneration": rs["metadata"].get("generation", 1),
            }
            status = {k: v for k, v in status.items() if v or k in ("replicas", "observedGeneration")}
            if rs.get("status") != status:
                rs["status"] = status
                self.api.write(REPLICASETS, rs)
        for deploy in self._load_all("deployments"):
            self._deployment_status(deploy, replicasets, rs_pods, now)
        for ds in self._load_all("daemonsets"):
            uid = ds["metadata"]["uid"]
            mine = [p for p in pods if owned_by(p, uid)]
            status, wake = daemonset_status(
                ds,
                desired=self._ds_desired.get(uid, len(mine)),
                pods=mine,
                revision=template_hash((ds.get("spec") or {}).get("template") or {}),
                now=now,
            )
            self._wake_wall(wake)
            if ds.get("status") != status:
                ds["status"] = status
                self.api.write(DAEMONSETS, ds)
        for pdb in self._load_all("poddisruptionbudgets"):
            status = pdb_status(pdb, [p for p in pods if p["metadata"]["namespace"] == pdb["metadata"]["namespace"]])
            allowed = status["disruptionsAllowed"] > 0
            status["conditions"] = _set_condition(
                list((pdb.get("status") or {}).get("conditions") or []),
                "DisruptionAllowed",
                "True" if allowed else "False",
                "SufficientPods" if allowed else "InsufficientPods",
                "",
            )
            for cond in status["conditions"]:
                cond["observedGeneration"] = status["observedGeneration"]
            if pdb.get("status") != status:
                pdb["status"] = status
                self.api.write(PDBS, pdb)

    def _deployment_status(
        self,
        deploy: dict[str, Any],
        replicasets: list[dict[str, Any]],
        rs_pods: dict[str, list[dict[str, Any]]],
        now: float,
    ) -> None:
        meta, spec = deploy["metadata"], deploy.get("spec") or {}
        owned = [rs for rs in replicasets if owned_by(rs, meta["uid"])]
        new_name = f"{meta['name']}-{template_hash(spec.get('template') or {})}"
        new_rs = next((rs for rs in owned if rs["metadata"]["name"] == new_name), None)
        status, wake = deployment_status(
            deploy,
            new_name=new_name,
            created=f"{meta['namespace']}/{new_name}" in self._created,
            all_pods=[p for rs in owned for p in rs_pods.get(rs["metadata"]["uid"], [])],
            updated_pods=rs_pods.get(new_rs["metadata"]["uid"], []) if new_rs else [],
            now=now,
        )
        self._wake_wall(wake)
        if deploy.get("status") != status:
            deploy["status"] = status
            self.api.write(DEPLOYMENTS, deploy)
