"""Celery tasks of the workflow engine: thin doors into fleet.workflows.engine."""

import os

from celery import Task, shared_task

from fleet.workflows import engine


@shared_task(bind=True, name="workflows.advance", ignore_result=True)
def workflow_advance_task(self: Task, run_id: int, lease_token: str | None = None, lease: float | None = None) -> str:
    """Advance one run by one step if it is due. A duplicate or stale message finds nothing to do.

    The message is the engine's wire protocol (fleet.workflows.dispatch): the sender sets the soft and
    hard time limits from the step's timeout and either hands over the lease it took for this message
    (`lease_token`) or says how long a lease the step needs (`lease`, seconds).
    """
    worker_id = f"{self.request.hostname}:{os.getpid()}"
    return str(engine.advance(run_id, worker_id=worker_id, lease_token=lease_token, lease_seconds=lease))


@shared_task(name="workflows.sweep", ignore_result=True)
def workflow_sweep_task() -> int:
    """Beat, every FLEET_WORKFLOW_SWEEP_SECONDS: wake the runs that are due and have no message in flight."""
    return engine.sweep()
