"""States of workflow runs and step attempts, the moves a run may make, and what one advance did."""

from enum import StrEnum

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

# Every statement in fleet/workflows/runs.py that changes a run's state is conditional on this table
# (`sources_of`), and the services check it before cancelling or retrying.
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


def sources_of(target: str) -> tuple[str, ...]:
    """The states a run may be in to move to `target` (sorted, for SQL `IN (...)` lists)."""
    return tuple(sorted(state for state, targets in RUN_TRANSITIONS.items() if target in targets))


class StepState(models.TextChoices):
    """What became of one attempt at a step (a StepRun row)."""

    RUNNING = "running", "Running"
    DONE = "done", "Done"
    WAITING = "waiting", "Waiting"
    RETRYING = "retrying", "Retrying"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    TIMED_OUT = "timed_out", "Timed out"


class Advanced(StrEnum):
    """What one call of `engine.advance` did (the task's return value; for logs and tests)."""

    DONE = "done"  # the step is done and the run points at its next step
    WAITING = "waiting"  # the step returned Wait: the same step runs again later
    RETRYING = "retrying"  # Retry, an exception or a timeout: the same step again after a backoff
    FINISHED = "finished"  # the run ended (succeeded, failed or cancelled: its state says which)
    NOT_DUE = "not_due"  # nothing to do: not due, leased by another worker, or ended
    LEASE_LOST = "lease_lost"  # the lease was lost while the step ran: its outcome was discarded
