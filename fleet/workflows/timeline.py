"""Every write of a run's timeline (StepRun rows), made by the engine in the transaction that records the
outcome it describes.

One row per attempt at a step, except waits: a step that waits again right after waiting (a poll that
found nothing new) adds a poll to its open waiting row instead of a row per poll, so "waited 2 min 30 s
for the edge to apply 3f9c2e1: 73 polls" is one row, from the first poll's start (`started_at`) to the
last one's end (`finished_at`), with the last poll's message. Times here are the worker's: they are for
people, and no part of the protocol compares them.
"""

import datetime as dt
import functools
from typing import Any

from django.db import connection
from django.utils import timezone

from fleet.workflows import clock
from fleet.workflows.choices import StepState
from fleet.workflows.models import StepRun, WorkflowRun

TABLE = StepRun._meta.db_table
_COLUMNS = (
    "run_id", "step", "attempt", "state", "started_at", "finished_at", "message", "error", "result", "worker", "polls",
)  # fmt: skip
MESSAGE_LENGTH = 2000


def add(
    *,
    run_id: int,
    step: str,
    attempt: int,
    state: str,
    started_at: dt.datetime | None,
    finished_at: dt.datetime,
    message: str = "",
    error: str = "",
    result: dict[str, Any] | None = None,
) -> None:
    """Append one row (an attempt and what came of it) to the run's timeline."""
    values: dict[str, Any] = {
        "run_id": run_id,
        "step": step,
        "attempt": attempt,
        "state": state,
        "started_at": started_at,
        "finished_at": finished_at,
        "message": message[:MESSAGE_LENGTH],
        "error": error,
        "result": result or {},
        "worker": "",
        "polls": 1,
    }
    params = [clock.prep(StepRun, column.removesuffix("_id"), values[column]) for column in _COLUMNS]
    placeholders = ", ".join(["%s"] * len(_COLUMNS))
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {TABLE} ({', '.join(_COLUMNS)}) VALUES ({placeholders})", params)  # noqa: S608


@functools.cache
def _poll_again_sql(vendor: str) -> str:
    # Constants and placeholders only: nothing from outside is formatted into the statement.
    return (
        f"UPDATE {TABLE} SET polls = polls + 1, finished_at = %s, message = %s"  # noqa: S608
        f" WHERE id = (SELECT MAX(id) FROM {TABLE} WHERE run_id = %s) AND step = %s AND state = %s"
    )


def add_wait(
    *, run_id: int, step: str, attempt: int, started_at: dt.datetime, finished_at: dt.datetime, message: str
) -> None:
    """Record a Wait: one more poll on the run's latest row when that row is this step waiting, else a
    new waiting row. A lost attempt, a retry or another step in between starts a new row."""
    params = [
        clock.prep(StepRun, "finished_at", finished_at),
        message[:MESSAGE_LENGTH],
        run_id,
        step,
        StepState.WAITING,
    ]
    with connection.cursor() as cursor:
        cursor.execute(_poll_again_sql(connection.vendor), params)
        if cursor.rowcount == 1:
            return
    add(
        run_id=run_id,
        step=step,
        attempt=attempt,
        state=StepState.WAITING,
        started_at=started_at,
        finished_at=finished_at,
        message=message,
    )


def add_lost_attempt(run: WorkflowRun, step: str) -> None:
    """The run is at attempt n > 1 of `step` with no outcome recorded for attempt n-1: that attempt's
    worker died or overran its lease (or the message carrying its lease was lost). Leave a row so the
    crash shows in the timeline. Only called on retries, so the read costs nothing on the common path."""
    last = run.steps.order_by("-id").values("step", "attempt", "state").first()
    failed_states = (StepState.RETRYING, StepState.TIMED_OUT)
    if last and last["step"] == step and last["attempt"] == run.attempt - 1 and last["state"] in failed_states:
        return
    add(
        run_id=run.pk,
        step=step,
        attempt=run.attempt - 1,
        state=StepState.TIMED_OUT,
        started_at=None,  # unknown: the worker that started it is gone
        finished_at=timezone.now(),
        message="no outcome was recorded: the worker was lost, or the lease expired (message lost?)",
    )
