"""Fixtures for the rollouts tests: users with exactly the rollout permissions a test is about."""

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from fleet.workflows.tasks import workflow_sweep_task
from simulator.testing import Simulator, running_simulator
from sites.imports import fleet_import_file
from sites.models import Site
from tests.factories import UserFactory
from tests.support import wait_until
from tests.support.services import Worker

VIEW = [
    "rollouts.view_application",
    "rollouts.view_release",
    "rollouts.view_rolloutplan",
    "rollouts.view_rollout",
]


def client_for(username: str, perms: list[str]) -> APIClient:
    client = APIClient()
    client.force_authenticate(UserFactory(username=username, perms=perms))
    return client


@pytest.fixture
def viewer_api(db: None) -> APIClient:
    return client_for("viewer", VIEW)


@pytest.fixture
def planner_api(db: None) -> APIClient:
    """May create applications, releases and plans, but not start or approve rollouts."""
    return client_for(
        "planner",
        [
            *VIEW,
            "rollouts.add_application",
            "rollouts.add_release",
            "rollouts.add_rolloutplan",
            "rollouts.change_rollout",
        ],
    )


# --- integration: a simulated fleet imported into the database, and the session's worker ----------

POS_BRIDGE_TEMPLATES = {
    "configmap.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: pos-bridge-config\n  namespace: {{ release.namespace }}\n"
        'data:\n  site: "{{ site.code }}"\n  region: "{{ site.region }}"\n  version: "{{ release.version }}"\n'
    ),
    "deployment.yaml": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: pos-bridge\n  namespace: {{ release.namespace }}\n"
        "spec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: pos-bridge\n  template:\n    metadata:\n"
        "      labels:\n        app: pos-bridge\n    spec:\n      containers:\n        - name: bridge\n"
        "          image: registry.example.com/pos-bridge:{{ release.version }}\n"
    ),
}


@pytest.fixture
def simulated_fleet(tmp_path: Path, django_db_blocker: Any) -> Iterator[Callable[[int], Simulator]]:
    """`simulated_fleet(n)`: a simulator with n sites (fast GitOps polling), imported into the database,
    with no business hours or maintenance windows (tests set the ones they are about)."""
    with ExitStack() as stack:

        def make(sites: int) -> Simulator:
            sim = stack.enter_context(running_simulator(sites=sites, state_dir=tmp_path / "sim", sync_interval=0.2))
            fleet_import_file(path=sim.state_dir / "fleet.json", actor="test")
            Site.objects.update(business_hours=[], maintenance_windows=[])
            return sim

        yield make


@pytest.fixture
def short_lease_worker(celery_worker: Worker) -> Iterator[Worker]:
    """The session's worker restarted with a 3-second lease, so a killed worker's runs resume in seconds."""
    with celery_worker.reconfigured(
        FLEET_WORKFLOW_LEASE_SECONDS="3",
        FLEET_ROLLOUT_STEP_TIMEOUT="8",  # a lost step's lease runs out in 13 s
        FLEET_ROLLOUT_DRIVE_TIMEOUT="8",
    ) as worker:
        yield worker


def commit_count(repo: Path) -> int:
    """Commits on main, by plain git (0 for an empty repository)."""
    out = subprocess.run(
        ["git", "--git-dir", str(repo), "rev-list", "--count", "main"],
        capture_output=True, text=True, check=False, env={**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null"},
    )  # fmt: skip
    return int(out.stdout.strip()) if out.returncode == 0 else 0


def commit_counts(sim: Simulator) -> dict[str, int]:
    """Commits on main in every simulated site's repository, by site code."""
    return {code: commit_count(sim.repo_path(code)) for code in sim.codes}


def rollout_state(rollout: Any) -> str:
    """The rollout's state as the database has it now."""
    rollout.refresh_from_db()
    return str(rollout.state)


def wave_codes(rollout: Any, index: int) -> list[str]:
    """The codes of the sites in wave `index` of the rollout."""
    from rollouts.models import SiteRollout

    return list(SiteRollout.objects.filter(rollout=rollout, wave__index=index).values_list("site__code", flat=True))


def git_show(repo: Path, spec: str) -> str | None:
    out = subprocess.run(["git", "--git-dir", str(repo), "show", spec], capture_output=True, text=True, check=False)
    return out.stdout if out.returncode == 0 else None


def wait_sweeping(check: Callable[[], Any], seconds: float, what: str) -> Any:
    """`wait_until`, sweeping between polls as beat would; a timeout shows the rollouts and runs."""
    return wait_until(check, seconds, what, interval=0.25, every=workflow_sweep_task, explain=_dump)


def driver_decides_again(rollout: Any, what: str) -> None:
    """Prove the rollout's driver has looked at the rollout again since now: wake it and wait for one more
    poll of its step. A check for something that must not happen, made after this, could have failed: the
    driver had its chance to start it (without this it passes on a machine too slow to have tried)."""
    from django.db.models import Sum

    from fleet.workflows import StepRun, runs_of, wake
    from rollouts.choices import DRIVE_KIND

    run = runs_of(rollout).filter(kind=DRIVE_KIND).get()

    def polls() -> int:
        return int(StepRun.objects.filter(run=run).aggregate(n=Sum("polls"))["n"] or 0)

    before = polls()
    wake(run)
    wait_sweeping(lambda: polls() > before, 30, f"the driver deciding again ({what})")


def _dump() -> str:
    """What the rollouts and runs looked like when a wait timed out, for the failure message."""
    from fleet.workflows.models import WorkflowRun
    from rollouts.models import Rollout, SiteRollout

    lines = [f"now {timezone.now().isoformat()}"]
    for rollout in Rollout.objects.all():
        lines.append(f"rollout {rollout.pk} {rollout.state} wave {rollout.current_wave} {rollout.counts}")
    for row in SiteRollout.objects.select_related("site"):
        lines.append(f"  site {row.site.code} w{row.wave_id} {row.state} {row.revision[:8]} {row.error[:100]}")
    for run in WorkflowRun.objects.order_by("id"):
        lines.append(
            f"  run {run.pk} {run.kind} {run.subject_id} {run.state} step={run.current_step} wake={run.wake_at} "
            f"enq={run.enqueued_at} lease={run.lease_owner}/{run.lease_until} err={run.error[:100]}"
        )
        last = run.steps.order_by("-id").first()
        if last is not None:
            lines.append(f"      last step {last.step} #{last.attempt} {last.state} {last.message[:120]}")
    return "\n".join(lines)
