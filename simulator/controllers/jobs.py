"""The Job controller: runs a Job's pods (`parallelism` at a time, until `completions` succeeded), and ends it
as Kubernetes does: Complete (with SuccessCriteriaMet), Failed after `activeDeadlineSeconds` (with
FailureTarget) or once more pods failed than `backoffLimit` allows. A suspended Job starts no pods."""

from simulator.controllers.context import JOBS, PODS, Context, Obj, pod_from_template
from simulator.store import now_iso
from simulator.workloads import owned_by, pod_finished, pod_ready, set_condition

COMPLETIONS_REACHED = ("CompletionsReached", "Reached expected number of succeeded pods")
DEADLINE_EXCEEDED = ("DeadlineExceeded", "Job was active longer than specified deadline")
BACKOFF_EXCEEDED = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")


def _finished(job: Obj) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def _conclude(conditions: list[Obj], kinds: tuple[str, ...], why: tuple[str, str]) -> list[Obj]:
    """Set the conditions that end a Job (e.g. SuccessCriteriaMet, then Complete), True for the same reason."""
    for kind in kinds:
        conditions = set_condition(conditions, kind, "True", *why)
    return conditions


class JobController:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        # When each running Job (by uid) was first seen (monotonic), for activeDeadlineSeconds.
        self.started: dict[str, float] = {}

    def reconcile(self, now: float) -> None:
        pods = self.ctx.load_all("pods")
        for job in self.ctx.load_all("jobs"):
            if not _finished(job):
                self._sync(job, [p for p in pods if owned_by(p, job["metadata"]["uid"])], now)

    def _sync(self, job: Obj, mine: list[Obj], now: float) -> None:
        ctx = self.ctx
        meta, spec = job["metadata"], job.get("spec") or {}
        status = job.setdefault("status", {})
        uid = meta["uid"]
        started = self.started.setdefault(uid, now)
        succeeded = sum(1 for p in mine if p.get("status", {}).get("phase") == "Succeeded")
        failed = sum(1 for p in mine if p.get("status", {}).get("phase") == "Failed")
        active = [p for p in mine if not pod_finished(p)]
        completions = int(spec.get("completions") or 1)
        status.setdefault("startTime", now_iso())
        deadline = spec.get("activeDeadlineSeconds")
        conditions = list(status.get("conditions") or [])
        if succeeded >= completions:
            for pod in active:
                ctx.delete(PODS, pod)
            conditions = _conclude(conditions, ("SuccessCriteriaMet", "Complete"), COMPLETIONS_REACHED)
            status.update(completionTime=now_iso(), active=0, ready=0, terminating=0)
            self.started.pop(uid, None)
        elif isinstance(deadline, int) and now - started >= deadline:
            for pod in active:
                ctx.delete(PODS, pod)
            conditions = _conclude(conditions, ("FailureTarget", "Failed"), DEADLINE_EXCEEDED)
            status.update(active=0, ready=0)
            self.started.pop(uid, None)
        elif failed > int(spec.get("backoffLimit", 6)):
            conditions = _conclude(conditions, ("Failed",), BACKOFF_EXCEEDED)
            status.update(active=0)
        else:
            if isinstance(deadline, int):
                ctx.wake(started + deadline)
            wanted = min(int(spec.get("parallelism") or 1), completions - succeeded) - len(active)
            if not spec.get("suspend"):
                for _ in range(max(0, wanted)):
                    ctx.create(PODS, pod_from_template(job, spec.get("template") or {}, meta["name"]))
            status["active"] = len(active) + max(0, wanted)
            status["ready"] = sum(1 for p in active if pod_ready(p))
        status["succeeded"], status["failed"] = succeeded, failed
        if not status["failed"]:
            status.pop("failed")
        if conditions:
            status["conditions"] = conditions
        status.setdefault("uncountedTerminatedPods", {})
        ctx.api.write(JOBS, job)
