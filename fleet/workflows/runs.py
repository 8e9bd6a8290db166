"""Every UPDATE of a workflow run: one named function per change, on the database's clock only.

Rules every statement here keeps, so nothing else needs to know them:

- Times are the database's (`clock.now()`), never a worker's or the web's: "due" is `wake_at <= now`
  with both sides on one clock.
- A statement that changes `state` allows only the moves in RUN_TRANSITIONS (`sources_of`).
- A statement that records a step's outcome is conditional on the lease (`lease_owner = token`): a
  worker that lost its lease writes nothing, and learns so from the answer (False / None).
- `attempt` counts the leases taken for the current step since the run last made progress: a claim
  adds one, a hand-over counts the receiver's (1 for the step it points to); progress (a new step, a
  Wait, a person's retry) sets it back to 0; a Retry leaves it for `max_attempts` to bound.
- `enqueued_at` is when the last wake-up message was sent, NULL when none is in flight.

Statements run on every step are hand-written SQL (the ORM took several times longer to build them
than the database to run them: docs/PERFORMANCE.md); the rare ones use the ORM with `Now()`.
"""

import datetime as dt
import functools
from typing import Any

from django.db import connection
from django.db.models import DateTimeField, ExpressionWrapper, Q
from django.db.models.functions import Now

from fleet.workflows import clock
from fleet.workflows.choices import ACTIVE_STATES, RunState, sources_of
from fleet.workflows.models import WorkflowRun
from fleet.workflows.timing import EARLY_MESSAGE_SECONDS

TABLE = WorkflowRun._meta.db_table
_ACTIVE = tuple(sorted(ACTIVE_STATES))


def _in(states: tuple[str, ...]) -> str:
    """`state IN (%s, ...)` for `states`: placeholders only, the values travel as parameters."""
    return f"state IN ({', '.join(['%s'] * len(states))})"


def _one_row(sql: str, params: list[Any]) -> bool:
    """Run a conditional UPDATE of one run: True if its condition held (the row changed), else False."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return bool(cursor.rowcount == 1)


def _checked() -> str:
    """Columns a claim returns beside the row, computed by the database: how many seconds of lease are
    left, and whether the run's deadline has passed."""
    overdue = f"(deadline IS NOT NULL AND deadline <= {clock.now()})"
    return f"{clock.seconds_until('lease_until')} AS lease_left, {overdue} AS overdue"


# --- taking the run ---------------------------------------------------------------------------------


@functools.cache
def _claim_sql(vendor: str) -> str:
    now = clock.now()
    # Constants and placeholders only: nothing from outside is formatted into the statement.
    return (
        f"UPDATE {TABLE} SET lease_owner = %s, lease_until = {clock.now_plus()}, state = %s,"  # noqa: S608
        f" attempt = attempt + 1, enqueued_at = NULL, started_at = COALESCE(started_at, {now}), updated_at = {now}"
        f" WHERE id = %s AND {_in(sources_of(RunState.RUNNING))}"
        f" AND (lease_until IS NULL OR lease_until < {now}) AND (wake_at IS NULL OR wake_at <= {clock.now_plus()})"
        f" RETURNING *, {_checked()}"
    )


def claim(run_id: int, token: str, lease_seconds: float) -> WorkflowRun | None:
    """An active, due, unleased run becomes `token`'s for `lease_seconds` and counts an attempt; returns
    the row as updated (with `lease_left` and `overdue`), or None when someone else has it or it is not due."""
    early = clock.seconds(EARLY_MESSAGE_SECONDS)
    lease = clock.seconds(lease_seconds)
    params = [token, lease, RunState.RUNNING, run_id, *sources_of(RunState.RUNNING), early]
    rows = list(WorkflowRun.objects.raw(_claim_sql(connection.vendor), params))
    return rows[0] if rows else None


@functools.cache
def _claim_handed_over_sql(vendor: str) -> str:
    now = clock.now()
    # Constants and placeholders only: nothing from outside is formatted into the statement.
    return (
        f"SELECT *, {_checked()} FROM {TABLE} WHERE id = %s AND lease_owner = %s AND {_in(_ACTIVE)}"  # noqa: S608
        f" AND lease_until > {now} AND (wake_at IS NULL OR wake_at <= {clock.now_plus()})"
    )


def claim_handed_over(run_id: int, token: str) -> WorkflowRun | None:
    """The run, if `token` is the unexpired lease its previous step handed over and it is due; a read,
    since `move_on_now` wrote this claim (and its attempt) in the transaction that sent the message."""
    params = [run_id, token, *_ACTIVE, clock.seconds(EARLY_MESSAGE_SECONDS)]
    rows = list(WorkflowRun.objects.raw(_claim_handed_over_sql(connection.vendor), params))
    return rows[0] if rows else None


@functools.cache
def _extend_sql(vendor: str) -> str:
    # Constants and placeholders only: nothing from outside is formatted into the statement.
    return (
        f"UPDATE {TABLE} SET lease_until = {clock.now_plus()}"  # noqa: S608
        f" WHERE id = %s AND lease_owner = %s AND lease_until > {clock.now()}"
    )


def extend(run_id: int, token: str, lease_seconds: float) -> bool:
    """`token`'s lease, if still unexpired, now ends `lease_seconds` from now."""
    return _one_row(_extend_sql(connection.vendor), [clock.seconds(lease_seconds), run_id, token])


# --- recording an outcome (conditional on the lease) ------------------------------------------------


@functools.cache
def _move_on_now_sql(vendor: str) -> str:
    now, plus = clock.now(), clock.now_plus()
    # Constants and placeholders only: nothing from outside is formatted into the statement.
    return (
        f"UPDATE {TABLE} SET state = %s, step_index = %s, current_step = %s, attempt = 1, context = %s,"  # noqa: S608
        f" wake_at = {plus}, enqueued_at = {now}, lease_owner = %s, lease_until = {plus}, updated_at = {now}"
        f" WHERE id = %s AND lease_owner = %s AND {_in(sources_of(RunState.RUNNING))}"
    )


def move_on_now(
    run: WorkflowRun, token: str, *, step_index: int, step_name: str, handover: str, lease_seconds: float, delay: float
) -> bool:
    """Point the run at its next step, due in `delay` seconds, and lease it to `handover` (the token the
    wake-up message carries) until `lease_seconds` after it is due; counts that step's first attempt."""
    context = clock.prep(WorkflowRun, "context", run.context)
    due, until = clock.seconds(delay), clock.seconds(delay + lease_seconds)
    params = [RunState.RUNNING, step_index, step_name, context, due, handover, until, run.pk, token]
    params += sources_of(RunState.RUNNING)
    return _one_row(_move_on_now_sql(connection.vendor), params)


@functools.cache
def _move_on_later_sql(vendor: str) -> str:
    now = clock.now()
    # Constants and placeholders only: nothing from outside is formatted into the statement.
    return (
        f"UPDATE {TABLE} SET state = %s, step_index = %s, current_step = %s, attempt = 0, context = %s,"  # noqa: S608
        f" wake_at = {clock.now_plus()}, enqueued_at = NULL, lease_owner = '', lease_until = NULL, updated_at = {now}"
        f" WHERE id = %s AND lease_owner = %s AND {_in(sources_of(RunState.WAITING))}"
    )


def move_on_later(run: WorkflowRun, token: str, *, step_index: int, step_name: str, delay: float) -> bool:
    """Point the run at its next step, due in `delay` seconds, unleased and with no message in flight:
    the sweeper wakes it, as after a long Wait."""
    context = clock.prep(WorkflowRun, "context", run.context)
    params = [RunState.WAITING, step_index, step_name, context, clock.seconds(delay), run.pk, token]
    params += sources_of(RunState.WAITING)
    return _one_row(_move_on_later_sql(connection.vendor), params)


@functools.cache
def _park_sql(vendor: str) -> str:
    now, plus = clock.now(), clock.now_plus()
    # Constants and placeholders only: nothing from outside is formatted into the statement.
    return (
        f"UPDATE {TABLE} SET state = %s, attempt = CASE WHEN %s THEN 0 ELSE attempt END, context = %s,"  # noqa: S608
        f" wake_at = CASE WHEN cancel_requested THEN {now}"
        f" WHEN deadline IS NOT NULL AND deadline < {plus} THEN deadline ELSE {plus} END,"
        f" enqueued_at = CASE WHEN %s THEN {now} ELSE NULL END,"
        f" lease_owner = '', lease_until = NULL, updated_at = {now}"
        f" WHERE id = %s AND lease_owner = %s AND {_in(sources_of(RunState.WAITING))}"
    )


def park(run: WorkflowRun, token: str, *, delay: float, progress: bool, message_sent: bool) -> bool:
    """The same step runs again in `delay` seconds (at the deadline if that comes first; at once if a
    cancel came in meanwhile); the lease is released. `progress` (a Wait) starts the attempts again;
    `message_sent` says a delayed wake-up message goes with it (else the sweeper wakes the run)."""
    context = clock.prep(WorkflowRun, "context", run.context)
    when = clock.seconds(delay)
    params = [RunState.WAITING, progress, context, when, when, message_sent, run.pk, token]
    params += sources_of(RunState.WAITING)
    return _one_row(_park_sql(connection.vendor), params)


@functools.cache
def _finish_sql(vendor: str, state: str) -> str:
    now = clock.now()
    # Constants and placeholders only: nothing from outside is formatted into the statement.
    return (
        f"UPDATE {TABLE} SET state = %s, error = %s, context = %s, step_index = %s, current_step = %s,"  # noqa: S608
        f" wake_at = NULL, enqueued_at = NULL, lease_owner = '', lease_until = NULL, finished_at = {now},"
        f" updated_at = {now} WHERE id = %s AND lease_owner = %s AND {_in(sources_of(state))}"
    )


def finish(run: WorkflowRun, token: str, *, state: str, error: str, step_index: int, current_step: str) -> bool:
    """The run ends in `state` (a move RUN_TRANSITIONS allows), with no lease and no wake-up; its
    exclusive key is free from the commit on (the partial unique index covers active runs only)."""
    context = clock.prep(WorkflowRun, "context", run.context)
    params = [state, error, context, step_index, current_step, run.pk, token, *sources_of(state)]
    return _one_row(_finish_sql(connection.vendor, state), params)


def note_error(run_id: int, error: str) -> None:
    """Replace the error of an ended run (a hook that failed after the end was recorded)."""
    WorkflowRun.objects.filter(pk=run_id).update(error=error)


# --- waking a run (services and the sweeper; no lease involved) -------------------------------------


def mark_sent(run_ids: list[int]) -> None:
    """The sweeper sent a wake-up message for each of `run_ids` now."""
    WorkflowRun.objects.filter(pk__in=run_ids).update(enqueued_at=Now())


def make_due(run_id: int) -> bool:
    """A pending or waiting run is due now with a message on its way, unless it already was (then False:
    one message serves every caller, so a hundred wake-ups in a moment cost one step)."""
    already_due = Q(enqueued_at__isnull=False, wake_at__lte=Now())
    return bool(
        WorkflowRun.objects.filter(pk=run_id, state__in=[RunState.PENDING, RunState.WAITING])
        .exclude(already_due)
        .update(wake_at=Now(), enqueued_at=Now(), updated_at=Now())
    )


def request_cancel(run_id: int, reason: str) -> bool:
    """An active run is asked to stop and is due now (a leased one stops after its step); True the
    first time only, so the reason and the audit entry are the first request's."""
    return bool(
        WorkflowRun.objects.filter(pk=run_id, state__in=sources_of(RunState.CANCELLED), cancel_requested=False).update(
            cancel_requested=True, cancel_reason=reason[:2000], wake_at=Now(), enqueued_at=Now(), updated_at=Now()
        )
    )


def restart(run_id: int, *, deadline_seconds: float) -> bool:
    """A failed run is pending again at the step that failed: attempts from zero, a deadline
    `deadline_seconds` from now, due now. IntegrityError if another run took its exclusive key."""
    deadline = ExpressionWrapper(Now() + dt.timedelta(seconds=deadline_seconds), output_field=DateTimeField())
    return bool(
        WorkflowRun.objects.filter(pk=run_id, state__in=sources_of(RunState.PENDING)).update(
            state=RunState.PENDING,
            attempt=0,
            error="",
            finished_at=None,
            deadline=deadline,
            wake_at=Now(),
            enqueued_at=Now(),
            updated_at=Now(),
        )
    )
