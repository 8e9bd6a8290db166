"""The kubelets of a site's nodes: a pod bound to a Ready node starts `pod_start_seconds` later with its
environment resolved (literal values, Secret and ConfigMap references: a missing one keeps it waiting in
CreateContainerConfigError, as a kubelet does, never failed), becomes Ready, and a Job's pod completes
`job_seconds` after its start. Pods on a node that is not Ready are not ready. The site's `pod_fault`
hook makes a workload pod fail as pods fail in the field (`simulator.podfaults`): crash-looping with a
growing back-off, or waiting on an image that cannot be pulled.

The monotonic times a kubelet keeps about its pods are not part of the API objects: they live here.
"""

from simulator import podfaults
from simulator.controllers.context import PODS, Context, Nodes, Obj, node_ready
from simulator.controllers.pod_status import complete, fail, set_ready, start, waiting
from simulator.workloads import EnvUnresolved, container_env, controller_of, pod_finished, pod_ready


class Kubelet:
    def __init__(self, ctx: Context, *, pod_start_seconds: float, job_seconds: float):
        self.ctx = ctx
        self.pod_start_seconds = pod_start_seconds
        self.job_seconds = job_seconds
        # Monotonic times by pod uid: bound to its node, running.
        self.bound_at: dict[str, float] = {}
        self.running_at: dict[str, float] = {}
        # The environment a Job pod's process got at its start (a kubelet resolves Secret references
        # then; the Secret may be deleted later). Kept for Job pods only: devices read it when one ends.
        self.job_env: dict[str, dict[str, str]] = {}
        # A crash-looping pod's next restart (monotonic), by uid: the back-off doubles up to 5 minutes.
        self.crash_restart_at: dict[str, float] = {}

    def forget(self, uid: str) -> None:
        """The pod is gone: drop what was kept about it."""
        self.bound_at.pop(uid, None)
        self.running_at.pop(uid, None)
        self.job_env.pop(uid, None)
        self.crash_restart_at.pop(uid, None)

    def reconcile(self, nodes: Nodes, now: float) -> None:
        ctx = self.ctx
        for pod in ctx.load_all("pods"):
            spec, status = pod.get("spec") or {}, pod.setdefault("status", {})
            node_name = spec.get("nodeName")
            if not node_name or pod_finished(pod):
                continue
            uid = pod["metadata"]["uid"]
            node = nodes.get(node_name)
            alive = node is not None and node_ready(node)
            bound = self.bound_at.setdefault(uid, now)
            phase = status.get("phase", "Pending")
            fault = ctx.pod_fault(pod) if alive else None
            if phase == "Pending" and not self._started(pod, node, alive, fault, bound, now):
                continue
            started = self.running_at.setdefault(uid, now)
            is_job = (controller_of(pod) or {}).get("kind") == "Job"
            gate = ctx.job_gates.get((controller_of(pod) or {}).get("uid", "")) if is_job else None
            if gate == "fail" and alive:
                fail(pod)
                ctx.api.write(PODS, pod)
                continue
            if is_job and alive and gate is None:
                if now >= started + self.job_seconds:
                    self._job_done(pod)
                    continue
                ctx.wake(started + self.job_seconds)
            if fault == "crashloop":
                if self._crash(pod, uid, now):
                    ctx.api.write(PODS, pod)
                continue
            recovered = self._recover(pod, uid)
            ready = alive and fault in (None, "image_pull")  # an image already pulled stays pulled
            if ready != pod_ready(pod) or phase == "Pending" or recovered:
                set_ready(pod, ready)
                ctx.api.write(PODS, pod)

    def _started(self, pod: Obj, node: Obj | None, alive: bool, fault: str | None, bound: float, now: float) -> bool:
        """Start a Pending pod when its node can: False while it cannot (yet), having written why."""
        if not alive:
            return False
        if now < bound + self.pod_start_seconds:
            self.ctx.wake(bound + self.pod_start_seconds)
            return False
        if fault == "image_pull":
            if self._pull_fails(pod, node, bound, now):
                self.ctx.api.write(PODS, pod)
            return False
        try:
            resolved = container_env(pod, self.ctx.store.load)
        except EnvUnresolved as exc:
            # As a kubelet: wait for the Secret/ConfigMap (a new Secret wakes the site), never fail.
            if waiting(pod, "CreateContainerConfigError", str(exc)):
                self.ctx.api.write(PODS, pod)
            return False
        start(pod, node)
        uid = pod["metadata"]["uid"]
        self.running_at[uid] = now
        if (controller_of(pod) or {}).get("kind") == "Job":
            self.job_env[uid] = {k: v for values in resolved.values() for k, v in values.items()}
        return True

    def _job_done(self, pod: Obj) -> None:
        """The Job's pod ran its time: it succeeded; the site hears of it with the environment it ran with."""
        complete(pod)
        self.ctx.api.write(PODS, pod)
        job_ref = controller_of(pod) or {}
        job = self.ctx.store.load("jobs", pod["metadata"]["namespace"], job_ref.get("name", ""))
        env = self.job_env.pop(pod["metadata"]["uid"], {})
        if job is not None:
            self.ctx.job_finished(job, pod, env)

    def _pull_fails(self, pod: Obj, node: Obj | None, bound: float, now: float) -> bool:
        """ErrImagePull on the first try, ImagePullBackOff once the kubelet backs off (one pod start later)."""
        backing_off = now >= bound + 2 * self.pod_start_seconds
        if not backing_off:
            self.ctx.wake(bound + 2 * self.pod_start_seconds)
        return podfaults.image_pull_fails(pod, node, backing_off=backing_off)

    def _crash(self, pod: Obj, uid: str, now: float) -> bool:
        """Restart the crashing containers when their back-off is over; until then nothing changes."""
        due = self.crash_restart_at.get(uid)
        if due is not None and now < due and podfaults.waiting_reason(pod) == podfaults.CRASH_LOOP:
            self.ctx.wake(due)
            return False
        backoff = podfaults.crash(pod)
        self.crash_restart_at[uid] = now + backoff
        self.ctx.wake(now + backoff)
        return True

    def _recover(self, pod: Obj, uid: str) -> bool:
        """A crash-looping pod whose fault is gone: its containers run again (restarts are kept)."""
        if self.crash_restart_at.pop(uid, None) is None and podfaults.waiting_reason(pod) != podfaults.CRASH_LOOP:
            return False
        podfaults.run_again(pod)
        return True
