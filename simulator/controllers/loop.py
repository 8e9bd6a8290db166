"""One reconcile pass over a site: the controllers in order, each over the shared `Context`.

The order follows a change through a real cluster's controllers, so that one pass carries it as far as it
goes: garbage collection first (nothing works on orphans), the Plan controller (its cordons, evictions and
Jobs are then seen by the rest of the pass), then the workload controllers that create and delete pods
(Deployment -> ReplicaSet -> pods, DaemonSets, Jobs), the scheduler binds the new pods, the kubelets run
them, and last the statuses are computed from what the kubelets left, all from one `Observed` view.
Controllers do not call each other: what one needs of another's work in the same pass it reads back from
the store (a write makes a new stored version, which the parse cache sees), and the garbage collector
tells the kubelet which pods it deleted through the `forget` callback it is given here; the Plan
controller holds its upgrade Jobs' pods through `Context.job_gates`, which the kubelet reads.
"""

import time

from simulator.apiserver import ApiServer
from simulator.controllers.context import Context, JobFinished, Nodes, Observed, PodFault, UpgradeFault, WakeAt
from simulator.controllers.daemonsets import DaemonSetController
from simulator.controllers.deployments import DeploymentController
from simulator.controllers.disruption import DisruptionController
from simulator.controllers.garbage import GarbageCollector
from simulator.controllers.jobs import JobController
from simulator.controllers.kubelet import Kubelet
from simulator.controllers.replicasets import ReplicaSetController
from simulator.controllers.scheduler import Scheduler
from simulator.controllers.upgrades import PlanController


class Controllers:
    """All controllers of one site; `reconcile()` runs one pass (see `simulator.controllers.context.Context`
    for the hooks)."""

    def __init__(
        self,
        api: ApiServer,
        *,
        pod_start_seconds: float,
        job_seconds: float,
        pod_fault: PodFault,
        job_finished: JobFinished,
        wake_at: WakeAt,
        upgrade_fault: UpgradeFault | None = None,
    ):
        hooks = {"upgrade_fault": upgrade_fault} if upgrade_fault else {}
        self.context = ctx = Context(api, pod_fault=pod_fault, job_finished=job_finished, wake_at=wake_at, **hooks)
        self.kubelet = Kubelet(ctx, pod_start_seconds=pod_start_seconds, job_seconds=job_seconds)
        self.garbage = GarbageCollector(ctx, forget=self.kubelet.forget)
        self.deployments = DeploymentController(ctx)
        self.replicasets = ReplicaSetController(ctx)
        self.daemonsets = DaemonSetController(ctx)
        self.jobs = JobController(ctx)
        self.scheduler = Scheduler(ctx)
        self.disruption = DisruptionController(ctx)
        self.plans = PlanController(ctx, upgrade_seconds=job_seconds)

    @property
    def pod_start_seconds(self) -> float:
        """How long a placed pod takes to start (the site sets it to 0 while it boots)."""
        return self.kubelet.pod_start_seconds

    @pod_start_seconds.setter
    def pod_start_seconds(self, seconds: float) -> None:
        self.kubelet.pod_start_seconds = seconds

    def reconcile(self) -> None:
        ctx = self.context
        ctx.begin()
        try:
            self._pass(ctx)
        finally:
            ctx.forget()

    def _pass(self, ctx: Context) -> None:
        now = time.monotonic()
        nodes: Nodes = {n["metadata"]["name"]: n for n in ctx.load_all("nodes")}
        self.garbage.reconcile(nodes)
        self.plans.reconcile(nodes, now)
        self.deployments.reconcile()
        self.replicasets.reconcile()
        self.daemonsets.reconcile(nodes)
        self.jobs.reconcile(now)
        self.scheduler.reconcile(nodes)
        self.kubelet.reconcile(nodes, now)
        seen = Observed.take(ctx)
        self.replicasets.report(seen)
        self.deployments.report(seen)
        self.daemonsets.report(seen)
        self.disruption.report(seen)
        ctx.end()
