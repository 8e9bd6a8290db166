"""Helpers shared by the onboarding tests (no tests here): advancing runs in this process as a worker would,
reading a run's timeline, a new planned site, and plain git."""

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.db.models.functions import Now

from fleet.workflows import engine
from fleet.workflows.choices import TERMINAL_STATES
from fleet.workflows.models import WorkflowRun
from sites import services
from sites.models import Site
from tests.sites.githost.support import unused_code
from tests.support import wait_until


def drive(run: WorkflowRun, *, until: Callable[[WorkflowRun], bool] | None = None, seconds: float = 30) -> WorkflowRun:
    """Advance `run` in this process as a worker would (a lease handed over is used, a wait is made due at
    once), until it ends or `until(run)`."""

    def ended() -> WorkflowRun | None:
        run.refresh_from_db()
        if run.state in TERMINAL_STATES or (until is not None and until(run)):
            return run
        advance_here(run)
        return None

    return wait_until(
        ended,
        seconds,
        f"run {run.kind} ending",
        interval=0.05,
        explain=lambda: f"stuck at {run.current_step} ({run.state}): {timeline(run)[-3:]}",
    )


def advance_here(run: WorkflowRun) -> None:
    """What a worker does with the run's wake-up: use a lease handed over, else make the run due now."""
    handed_over = run.lease_owner if run.lease_owner.startswith("handoff/") else None
    if handed_over is None:
        WorkflowRun.objects.filter(pk=run.pk).update(wake_at=Now())
    engine.advance(run.pk, worker_id="test", lease_token=handed_over)


def drive_all(done: Callable[[], bool], seconds: float = 60) -> None:
    """Advance every active run here (a rollout's driver and its site runs) until `done()`."""

    def all_done() -> bool:
        if done():
            return True
        for run in WorkflowRun.objects.exclude(state__in=TERMINAL_STATES).exclude(kind="node.provision"):
            advance_here(run)
        return False

    wait_until(
        all_done,
        seconds,
        "every run done",
        interval=0.05,
        explain=lambda: f"still active: {list(WorkflowRun.objects.exclude(state__in=TERMINAL_STATES))}",
    )


def timeline(run: WorkflowRun) -> list[tuple[str, str, str]]:
    return list(run.steps.order_by("id").values_list("step", "state", "message"))


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    environment = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_GLOBAL": os.devnull, **(env or {})}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout


def new_site(**fields: Any) -> Site:
    """A planned site whose code no simulated site has."""
    code = unused_code()
    return services.site_create(
        actor="test", source="test", code=code, name=code, region="test", timezone="UTC", state="planned", **fields
    )
