"""States of workflow runs and step attempts, and the transitions a run may make."""

from django.db import models


class RunState(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


# A run in one of these states holds its exclusive key (the partial unique index says so) and is looked
# at by the sweeper; the terminal ones never change again, except `failed` -> `pending` by a retry.
ACTIVE_STATES = frozenset({RunState.PENDING, RunState.RUNNING, RunState.WAITING})
TERMINAL_STATES = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})

RUN_TRANSITIONS: dict[str, frozenset[str]] = {
    RunState.PENDING: frozenset({RunState.RUNNING, RunState.CANCELLED, RunState.FAILED}),
    RunState.RUNNING: frozenset(
        {RunState.RUNNING, RunState.WAITING, RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED}
    ),
    RunState.WAITING: frozenset({RunState.RUNNING, RunState.CANCELLED, RunState.FAILED}),
    RunState.SUCCEEDED: frozenset(),
    RunState.FAILED: frozenset({RunState.PENDING}),  # workflow_retry: again from the failed step
    RunState.CANCELLED: frozenset(),
}


class StepState(models.TextChoices):
    """What became of one attempt at a step (a StepRun row)."""

    RUNNING = "running", "Running"
    DONE = "done", "Done"
    WAITING = "waiting", "Waiting"
    RETRYING = "retrying", "Retrying"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    TIMED_OUT = "timed_out", "Timed out"
