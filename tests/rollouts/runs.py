"""Running a workflow run to its end in the test process, as a worker would: for unit tests of kinds
whose steps need no worker of their own (the integration tests use the real worker)."""

import time

import pytest
from django.db.models.functions import Now

from fleet.workflows import engine
from fleet.workflows.choices import TERMINAL_STATES
from fleet.workflows.models import WorkflowRun


def run_to_end(run_id: int, *, seconds: float = 120) -> WorkflowRun:
    """Advance run `run_id` here until it ends, making every wait due at once (a guard, not a timing)."""
    give_up = time.monotonic() + seconds
    while True:
        run = WorkflowRun.objects.get(pk=run_id)
        if run.state in TERMINAL_STATES:
            return run
        if time.monotonic() > give_up:
            steps = list(run.steps.values_list("step", "state", "message"))[-5:]
            pytest.fail(f"run {run.kind} {run.pk} did not end: at {run.current_step} ({run.state}): {steps}")
        owner = run.lease_owner or ""
        if owner.startswith("handoff/"):  # the lease the last step handed to its wake-up message
            WorkflowRun.objects.filter(pk=run_id).update(wake_at=Now())
            engine.advance(run_id, worker_id="test", lease_token=owner)
        else:
            WorkflowRun.objects.filter(pk=run_id).update(wake_at=Now(), lease_until=None)
            engine.advance(run_id, worker_id="test")
