"""Hand-written SQL for the statements every step executes: take the lease (returning the row) or claim
the lease handed over with the message, move on to the next step, insert the StepRun.

Why not the ORM here: profiling the engine (bench/engine.py) showed Django building these queries
(filters, expressions, compilation) costing several times what the database spent running them, on
every step. The statements are the same as the ORM's `.filter(...).update(...)`, with the database's
clock; `UPDATE ... RETURNING` (PostgreSQL, SQLite >= 3.35) saves the SELECT that followed the lease.
Everything else in the engine stays on the ORM. The unit tests run these on SQLite and PostgreSQL.
"""

import functools
import json
from typing import Any

from django.db import connection

from fleet.workflows.choices import ACTIVE_STATES, RunState
from fleet.workflows.models import StepRun, WorkflowRun

RUN_TABLE = WorkflowRun._meta.db_table
STEP_TABLE = StepRun._meta.db_table
_ACTIVE = tuple(sorted(ACTIVE_STATES))
# A wake-up may find its run due up to this early. Hosts' clocks differ by milliseconds (wake_at is
# written with the web's or worker's clock, compared with the database's), and SQLite's clock counts
# milliseconds where Python writes microseconds: without it, a message sent "now" could find the run
# not yet due and leave it to the sweeper. Waking a poll a second early is harmless.
EARLY_WAKE_SECONDS = 1.0


def _now() -> str:
    """The database clock, as Django's Now() writes it for this backend."""
    if connection.vendor == "postgresql":
        return "STATEMENT_TIMESTAMP()"
    return "STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'NOW')"


def _now_plus() -> str:
    """The database clock plus a number of seconds given as the next parameter."""
    if connection.vendor == "postgresql":
        return "(STATEMENT_TIMESTAMP() + %s * INTERVAL '1 second')"
    return "STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'NOW', %s)"


def _seconds(value: float) -> Any:
    return value if connection.vendor == "postgresql" else f"+{value:.3f} seconds"


@functools.cache
def _take_sql(vendor: str) -> str:
    states = ", ".join(["%s"] * len(_ACTIVE))
    # Constants and placeholders only: nothing from outside is formatted into the statement.
    return (
        f"UPDATE {RUN_TABLE} SET lease_owner = %s, lease_until = {_now_plus()}, state = %s,"  # noqa: S608
        f" attempt = attempt + 1, enqueued_at = NULL, started_at = COALESCE(started_at, {_now()}),"
        f" updated_at = {_now()}"
        f" WHERE id = %s AND state IN ({states})"
        f" AND (lease_until IS NULL OR lease_until < {_now()}) AND (wake_at IS NULL OR wake_at <= {_now_plus()})"
        " RETURNING *"
    )


def take_lease(run_id: int, token: str, lease_seconds: float) -> WorkflowRun | None:
    """The one conditional UPDATE that decides who advances the run; returns the row as updated, or
    None when the run is not active, not due, or leased by someone else."""
    params = [token, _seconds(lease_seconds), RunState.RUNNING, run_id, *_ACTIVE, _seconds(EARLY_WAKE_SECONDS)]
    rows = list(WorkflowRun.objects.raw(_take_sql(connection.vendor), params))
    return rows[0] if rows else None


@functools.cache
def _claim_sql(vendor: str) -> str:
    states = ", ".join(["%s"] * len(_ACTIVE))
    # Constants and placeholders only: nothing from outside is formatted into the statement.
    return (
        f"SELECT * FROM {RUN_TABLE} WHERE id = %s AND lease_owner = %s AND state IN ({states})"  # noqa: S608
        f" AND lease_until > {_now()} AND (wake_at IS NULL OR wake_at <= {_now_plus()})"
    )


def claim_handoff(run_id: int, token: str) -> WorkflowRun | None:
    """The run, if the lease the previous step handed over with the message (`token`) is still valid
    and the run is due (a delayed message delivered early finds it not yet due).

    A read, not a write: the lease was taken for this message in the transaction that recorded the
    previous step, so the step costs one committed transaction instead of two.
    """
    params = [run_id, token, *_ACTIVE, _seconds(EARLY_WAKE_SECONDS)]
    rows = list(WorkflowRun.objects.raw(_claim_sql(connection.vendor), params))
    return rows[0] if rows else None


@functools.cache
def _move_on_sql(vendor: str) -> str:
    # Constants and placeholders only: nothing from outside is formatted into the statement.
    return (
        f"UPDATE {RUN_TABLE} SET state = %s, step_index = %s, current_step = %s, attempt = 1, context = %s,"  # noqa: S608
        f" wake_at = {_now_plus()}, enqueued_at = {_now_plus()}, lease_owner = %s, lease_until = {_now_plus()},"
        f" updated_at = {_now()}"
        " WHERE id = %s AND lease_owner = %s"
    )


def move_on(
    run: WorkflowRun,
    token: str,
    *,
    step_index: int,
    step_name: str,
    handoff: str,
    lease_seconds: float,
    delay: float = 0.0,
) -> bool:
    """Point the run at its next step, due in `delay` seconds, if `token` still holds its lease, and
    lease it to `handoff` from now until `lease_seconds` after it is due (the wake-up message carries
    that token; attempt 1 of the next step is counted here)."""
    context = _prep(WorkflowRun, "context", run.context)
    due, until = _seconds(delay), _seconds(delay + lease_seconds)
    params = [RunState.RUNNING, step_index, step_name, context, due, due, handoff, until, run.pk, token]
    with connection.cursor() as cursor:
        cursor.execute(_move_on_sql(connection.vendor), params)
        return bool(cursor.rowcount == 1)


@functools.cache
def _move_on_later_sql(vendor: str) -> str:
    # Constants and placeholders only: nothing from outside is formatted into the statement.
    return (
        f"UPDATE {RUN_TABLE} SET state = %s, step_index = %s, current_step = %s, attempt = 0, context = %s,"  # noqa: S608
        f" wake_at = {_now_plus()}, enqueued_at = NULL, lease_owner = '', lease_until = NULL,"
        f" updated_at = {_now()}"
        " WHERE id = %s AND lease_owner = %s"
    )


def move_on_later(run: WorkflowRun, token: str, *, step_index: int, step_name: str, delay: float) -> bool:
    """Point the run at its next step, due in `delay` seconds, if `token` still holds its lease. The run
    waits unleased with no message in flight, like after a long Wait: the sweeper wakes it."""
    context = _prep(WorkflowRun, "context", run.context)
    params = [RunState.WAITING, step_index, step_name, context, _seconds(delay), run.pk, token]
    with connection.cursor() as cursor:
        cursor.execute(_move_on_later_sql(connection.vendor), params)
        return bool(cursor.rowcount == 1)


_STEP_COLUMNS = ("run_id", "step", "attempt", "state", "started_at", "finished_at", "message", "error", "result")


def insert_step_run(**values: Any) -> None:
    """INSERT one StepRun (the timeline row of an attempt)."""
    values.setdefault("worker", "")
    columns = (*_STEP_COLUMNS, "worker")
    params = [_prep(StepRun, column.removesuffix("_id"), values[column]) for column in columns]
    placeholders = ", ".join(["%s"] * len(columns))
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {STEP_TABLE} ({', '.join(columns)}) VALUES ({placeholders})", params)  # noqa: S608


def _prep(model: Any, name: str, value: Any) -> Any:
    """A value as the ORM would send it for this field (datetimes for SQLite, JSON for jsonb...)."""
    field = model._meta.get_field(name)
    if name in ("context", "result"):
        json.dumps(value)  # fail here, readably, rather than in the driver
    return field.get_db_prep_value(value, connection, prepared=False)
