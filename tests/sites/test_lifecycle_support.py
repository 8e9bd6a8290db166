"""Helpers shared by the lifecycle tests (no tests here): a simulated fleet imported into the inventory (with a
real worker: `live_simulator` and the `fleet` fixture), and a driver that advances a run in this process (the
engine's own advance, every wait made due at once)."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.db.models.functions import Now

from fleet.workflows import engine
from fleet.workflows.choices import TERMINAL_STATES
from fleet.workflows.models import WorkflowRun
from simulator.testing import Simulator, running_simulator
from sites.clusters import SiteCluster
from sites.imports import fleet_import_file
from sites.models import Node, Site
from tests.support import wait_until
from tests.support.services import Worker

FAST_SIM = ["--job-seconds", "0.3", "--node-gone-seconds", "0.3", "--reboot-seconds", "0.5", "--retry-seconds", "0.5"]
FAST_SIM += ["--heartbeat-interval", "0.5", "--pod-start-seconds", "0.1"]

FAST_TIMINGS = {
    "FLEET_NODE_POLL_SECONDS": 0.3,
    "FLEET_NODE_CHECKIN_POLL_SECONDS": 0.3,
    "FLEET_NODE_DRAIN_SECONDS": 60,
    "FLEET_NODE_WIPE_SECONDS": 60,
    "KUBE_TIMEOUT_SECONDS": 2.0,
}


@contextmanager
def live_simulator(live_server: Any, tmp_path_factory: pytest.TempPathFactory, *, sites: int) -> Iterator[Simulator]:
    """A simulator at the fast timings whose machines register and heartbeat with the live server."""
    with running_simulator(
        sites=sites, state_dir=tmp_path_factory.mktemp("sim"), control_plane=live_server.url, extra_args=FAST_SIM
    ) as running:
        yield running


@pytest.fixture
def fleet(sim: Simulator, settings: Any, celery_worker: Worker) -> Iterator[list[Site]]:
    """The module's simulated fleet imported, the control plane at the fast timings, the session's worker running
    (import it into a module that defines `sim`); the simulator's faults cleared afterwards."""
    for name, value in FAST_TIMINGS.items():
        setattr(settings, name, value)
    yield import_fleet(sim)
    sim.clear_faults()


def import_fleet(sim: Simulator) -> list[Site]:
    fleet_import_file(path=sim.state_dir / "fleet.json", actor="test")
    return list(Site.objects.filter(code__in=sim.codes).order_by("code"))


def agent(site: Site) -> Node:
    """An agent node of the site that is active (the imported fleet has one server and agents)."""
    return Node.objects.filter(site=site, role="agent", state="active").order_by("hostname").first()  # type: ignore[return-value]


def deliver(run: WorkflowRun) -> str:
    owner = WorkflowRun.objects.filter(pk=run.pk).values_list("lease_owner", flat=True).first() or ""
    return engine.advance(run.pk, worker_id="test", lease_token=owner if owner.startswith("handoff/") else None)


def drive(
    run: WorkflowRun, *, until: Callable[[WorkflowRun], bool] | None = None, seconds: float = 20, pause: float = 0.1
) -> WorkflowRun:
    """Advance `run` here until it ends (or `until(run)`), making each wait due at once."""

    def ended() -> WorkflowRun | None:
        run.refresh_from_db()
        if run.state in TERMINAL_STATES or (until is not None and until(run)):
            return run
        WorkflowRun.objects.filter(pk=run.pk).update(wake_at=Now(), lease_until=None)
        deliver(run)
        return None

    def stuck() -> str:
        steps = list(run.steps.values_list("step", "state", "message"))[-5:]
        return f"run {run.kind} stuck at {run.current_step} ({run.state}): {steps}"

    return wait_until(ended, seconds, f"run {run.kind} ending", interval=pause, explain=stuck)


def at_step(name: str) -> Callable[[WorkflowRun], bool]:
    return lambda run: run.current_step == name and run.state == "waiting"


def wipe_jobs(sim: Simulator, code: str) -> list[dict[str, Any]]:
    return [j for j in sim.jobs(code) if j["labels"].get("edgefleet.io/action") == "wipe"]


def sim_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    return tmp_path_factory.mktemp(name)


def cluster_of(site: Site) -> SiteCluster:
    """The Kubernetes adapter for the site's cluster, as the workflows build it."""
    return SiteCluster.for_cluster(Site.objects.select_related("cluster").get(pk=site.pk).cluster)
