"""What the controllers of one site share: the API they write through, the parse cache of the current pass,
the earliest wake-up they asked for, the site's hooks, and the few helpers more than one controller uses
(`template_hash`, `pod_from_template`, `node_ready`).

`Observed` is what the status half of a pass reads: the pods, once the kubelets have run, and the
ReplicaSets, taken once so that every status of the pass is computed from the same view at the same time.
"""

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from simulator.apiserver import ApiServer, random_suffix
from simulator.errors import ApiError
from simulator.resources import BY_PLURAL, ResourceType
from simulator.workloads import condition, controller_of, owner_reference, pod_finished

PODS, REPLICASETS, DEPLOYMENTS = BY_PLURAL["pods"], BY_PLURAL["replicasets"], BY_PLURAL["deployments"]
DAEMONSETS, JOBS, PDBS = BY_PLURAL["daemonsets"], BY_PLURAL["jobs"], BY_PLURAL["poddisruptionbudgets"]
SECRETS = BY_PLURAL["secrets"]
TEMPLATE_HASH = "pod-template-hash"

Obj = dict[str, Any]
Nodes = dict[str, Obj]  # this pass's Nodes by name
PodFault = Callable[[Obj], str | None]
JobFinished = Callable[[Obj, Obj, dict[str, str]], None]
WakeAt = Callable[[float], None]
UpgradeFault = Callable[[str], str | None]


def _no_upgrade_fault(node: str) -> str | None:
    return None


def node_ready(node: Obj) -> bool:
    cond = condition(node, "Ready")
    return bool(cond and cond.get("status") == "True")


def template_hash(template: Any) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    # Pod-template hashes avoid vowels and look like "7d9f8c6b5"; any stable short string works.
    return "".join("bcdfghjklmnpqrstvwxz2456789"[int(c, 16) % 27] for c in digest[:10])


def pod_from_template(owner: Obj, template: Obj, prefix: str, node: str | None = None) -> Obj:
    """A new pod of `owner` (a ReplicaSet, DaemonSet or Job) from its pod template, bound to `node` if given."""
    template_meta = template.get("metadata") or {}
    spec = json.loads(json.dumps(template.get("spec") or {}))
    if node:
        spec["nodeName"] = node
    pod_meta: Obj = {
        "name": f"{prefix}-{random_suffix()}",
        "namespace": owner["metadata"]["namespace"],
        "labels": dict(template_meta.get("labels") or {}),
        "ownerReferences": [owner_reference(owner)],
    }
    if template_meta.get("annotations"):
        pod_meta["annotations"] = dict(template_meta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}


class Context:
    """One site's API and hooks, and what a reconcile pass keeps while it runs (see `begin` and `end`).

    Hooks connect the controllers to the rest of the simulated site:

    - `pod_fault(pod)`: what a fault does to this workload pod: None (nothing), "unavailable" (it
      runs but never becomes ready), "crashloop" (its containers exit and are restarted with a
      growing back-off: CrashLoopBackOff) or "image_pull" (its image cannot be pulled: ErrImagePull,
      then ImagePullBackOff);
    - `job_finished(job, pod, env)`: a Job pod ran to completion on its node with this environment (its
      literal values and what its Secret and ConfigMap references resolved to): log it, obey a wipe;
    - `wake_at(monotonic_time)`: run a pass again then;
    - `upgrade_fault(node)`: what a fault does to a system-upgrade Job on that node: None, "fail" or "hang".

    `job_gates` (Job uid -> "hold" or "fail") is how the Plan controller (upgrades.py) steps the upgrade
    pods it owns: the kubelet does not let a held Job pod finish, and fails a pod whose Job is "fail".
    """

    def __init__(
        self,
        api: ApiServer,
        *,
        pod_fault: PodFault,
        job_finished: JobFinished,
        wake_at: WakeAt,
        upgrade_fault: UpgradeFault = _no_upgrade_fault,
    ):
        self.api = api
        self.upgrade_fault = upgrade_fault
        self.job_gates: dict[str, str] = {}
        self.store = api.store
        self.pod_fault = pod_fault
        self.job_finished = job_finished
        self.wake_at = wake_at
        self._next_wake: float | None = None
        # Parsed objects of the current pass, by stored version: a pass reads pods in several steps, and
        # parsing JSON is most of its cost. A write makes a new stored version, so edits are never stale.
        self._parsed: dict[int, tuple[Any, Obj]] = {}

    # --- a pass -------------------------------------------------------------------------------------

    def begin(self) -> None:
        self._next_wake = None
        self._parsed = {}

    def end(self) -> None:
        """Ask the site for the earliest wake-up the pass wanted (only when it ran to its end)."""
        if self._next_wake is not None:
            self.wake_at(self._next_wake)

    def forget(self) -> None:
        self._parsed = {}  # 3000 sites keeping their last pass parsed would triple the memory

    def load_all(self, plural: str) -> list[Obj]:
        found = []
        for stored in self.store.scan(plural):
            cached = self._parsed.get(id(stored))
            if cached is None or cached[0] is not stored:
                cached = (stored, stored.load())
                self._parsed[id(stored)] = cached
            found.append(cached[1])
        return found

    def wake(self, at: float) -> None:
        if self._next_wake is None or at < self._next_wake:
            self._next_wake = at

    def wake_wall(self, at: float | None) -> None:
        """Wake at a wall-clock time (status timestamps are wall clock; timers are monotonic)."""
        if at is not None:
            self.wake(time.monotonic() + max(0.0, at - time.time()))

    # --- writes -------------------------------------------------------------------------------------

    def create(self, rt: ResourceType, obj: Obj) -> Obj | None:
        try:
            return self.api.create(rt, obj["metadata"].get("namespace"), obj)
        except ApiError:
            return None  # e.g. the namespace is being deleted; the next pass sees the new world

    def delete(self, rt: ResourceType, obj: Obj) -> None:
        meta = obj["metadata"]
        try:
            self.api.delete(rt, meta.get("namespace", ""), meta["name"])
        except ApiError:
            pass

    def write_status(self, rt: ResourceType, obj: Obj, status: Obj) -> None:
        """Set the object's status and write it, unless it already is that status."""
        if obj.get("status") != status:
            obj["status"] = status
            self.api.write(rt, obj)


@dataclass(slots=True)
class Observed:
    """The site as the statuses of a pass see it, after the kubelets ran."""

    now: float  # wall clock: status timestamps and minReadySeconds are wall clock, as in Kubernetes
    pods: list[Obj]  # not being deleted
    replicasets: list[Obj]
    by_replicaset: dict[str, list[Obj]]  # ReplicaSet uid -> its pods that have not finished

    @classmethod
    def take(cls, ctx: Context) -> "Observed":
        now = time.time()
        pods = [p for p in ctx.load_all("pods") if not p["metadata"].get("deletionTimestamp")]
        replicasets = ctx.load_all("replicasets")
        by_replicaset: dict[str, list[Obj]] = {}
        for pod in pods:
            ref = controller_of(pod)
            if ref and ref.get("kind") == "ReplicaSet" and not pod_finished(pod):
                by_replicaset.setdefault(ref["uid"], []).append(pod)
        return cls(now, pods, replicasets, by_replicaset)
