"""Advancing runs: take the lease, run one step, record its outcome, schedule the next wake-up.

The protocol, in database terms:

1. `advance` takes the run with ONE conditional UPDATE on the database clock: it must be active, due
   (`wake_at` passed) and not leased by anyone else (`lease_until` passed). No lock is held afterwards,
   so the step's I/O runs outside any transaction.
2. The step runs, bounded by its timeout (Celery's soft time limit interrupts a stuck one; an attempt
   that overran is discarded as timed out).
3. One transaction records the outcome: an UPDATE of the run *conditional on still holding the lease*
   (a worker that lost it records nothing) and the StepRun row; terminal states run the definition's
   hooks in the same transaction. The next wake-up is a stored `wake_at`; only "run the next step now
   (or in a moment)" and waits shorter than a sweep send a message, after commit. A next step's message
   carries the lease for it, taken in that transaction (step 1 is then a read).
4. `sweep` (beat, every few seconds) re-sends wake-ups for runs whose `wake_at` passed with no message in
   flight: waits that ended, leases of dead workers, messages a broker lost.
"""

import datetime as dt
import json
import logging
import random
import secrets
import time
import traceback
from dataclasses import dataclass
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import Case, Value, When
from django.db.models.functions import Now
from django.utils import timezone

from fleet.audit.services import audit_record
from fleet.workflows import selectors, sql
from fleet.workflows.choices import RunState, StepState
from fleet.workflows.definitions import Step, Workflow, get_workflow
from fleet.workflows.dispatch import enqueue_advance, lease_needed, lease_to_send
from fleet.workflows.models import StepRun, WorkflowRun
from fleet.workflows.outcomes import Done, Fail, Outcome, Retry, Wait

log = logging.getLogger(__name__)

ENGINE_ACTOR = "system:workflow"

# What `advance` did, for logs and tests.
NOT_DUE = "not_due"
LEASE_LOST = "lease_lost"


def backoff_delay(attempt: int, *, base: float, cap: float) -> float:
    """Seconds before attempt `attempt + 1`: exponential with full jitter, capped ("Exponential Backoff
    and Jitter", AWS architecture blog) so that many runs failing together do not retry together."""
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    return random.uniform(0, ceiling)  # noqa: S311  # jitter, not cryptography


def advance(run_id: int, *, worker_id: str, lease_token: str | None = None, lease_seconds: float | None = None) -> str:
    """Advance run `run_id` by one step if it is due and nobody else holds it; return what happened
    (a StepState value, a terminal RunState value, NOT_DUE or LEASE_LOST). Safe to call any number of
    times: a call for a run that is not due changes nothing.

    `lease_token` is the lease the previous step handed over with the message (see _move_on); without
    it, or when it is no longer valid, the lease is taken as usual, for `lease_seconds` when the
    message says how long the step needs (at least FLEET_WORKFLOW_LEASE_SECONDS).
    """
    run = sql.claim_handoff(run_id, lease_token) if lease_token else None
    token = lease_token or ""
    if run is None:
        token = f"{worker_id}/{secrets.token_hex(4)}"
        run = _take_lease(run_id, token, lease_seconds)
        if run is None:
            return NOT_DUE
    definition = get_workflow(run.kind)
    step = definition.step_at(run.step_index) if definition else None
    if definition is None or step is None:
        where = f"step {run.step_index}" if definition else f"kind {run.kind!r}"
        return _finish(run, token, definition, step, RunState.FAILED, error=f"unknown workflow {where}")
    if run.cancel_requested:
        reason = f"cancelled: {run.cancel_reason}" if run.cancel_reason else "cancelled"
        return _finish(run, token, definition, step, RunState.CANCELLED, error=reason, step_state=StepState.CANCELLED)
    if run.deadline is not None and timezone.now() >= run.deadline:
        error = f"deadline {run.deadline:%Y-%m-%d %H:%M:%S} UTC passed before step {step.name}"
        return _finish(run, token, definition, step, RunState.FAILED, error=error, step_state=StepState.FAILED)
    if run.attempt > 1:
        _record_lost_attempt(run, step)
    if run.attempt > step.max_attempts:
        error = f"step {step.name} gave no outcome in {step.max_attempts} attempts (worker lost or lease expired)"
        return _finish(run, token, definition, step, RunState.FAILED, error=error)
    if not _lease_covers(run, step) and not _extend_lease(run, token, step):
        return LEASE_LOST
    attempt = _run_step(run, step)
    return _record(run, token, definition, step, attempt)


# --- taking and keeping the lease -------------------------------------------------------------------


def _take_lease(run_id: int, token: str, seconds: float | None = None) -> WorkflowRun | None:
    """The one conditional UPDATE that decides who advances the run (the database clock decides "due"),
    returning the run as updated. It also counts the attempt, so a step that kills its worker every
    time still runs out of attempts."""
    return sql.take_lease(run_id, token, max(settings.FLEET_WORKFLOW_LEASE_SECONDS, seconds or 0.0))


def _lease_covers(run: WorkflowRun, step: Step) -> bool:
    """Whether the lease lasts past Celery's hard limit for this step (with a second for clock skew)."""
    if run.lease_until is None:
        return False
    remaining = (run.lease_until - timezone.now()).total_seconds()
    return remaining >= lease_needed(step.timeout) + 1.0


def _extend_lease(run: WorkflowRun, token: str, step: Step) -> bool:
    """A step with a long timeout (or a handed-over lease that aged in a queue) keeps the run for as
    long as the step may take, if the lease is still ours and unexpired."""
    lease = dt.timedelta(seconds=lease_needed(step.timeout))
    extended = WorkflowRun.objects.filter(pk=run.pk, lease_owner=token, lease_until__gt=Now()).update(
        lease_until=Now() + lease
    )
    return extended == 1


def _record_lost_attempt(run: WorkflowRun, step: Step) -> None:
    """Attempt n > 1 without a recorded attempt n-1 before it: that one's worker died or overran its
    lease. Leave a row in the timeline so the crash is visible (only queried on retries)."""
    last = run.steps.order_by("-id").values("step", "attempt", "state").first()
    failed_states = (StepState.RETRYING, StepState.TIMED_OUT)
    if last and last["step"] == step.name and last["attempt"] == run.attempt - 1 and last["state"] in failed_states:
        return
    StepRun.objects.create(
        run=run,
        step=step.name,
        attempt=run.attempt - 1,
        state=StepState.TIMED_OUT,
        finished_at=timezone.now(),
        message="no outcome was recorded: the worker was lost, or the lease expired (message lost?)",
    )


# --- running a step ---------------------------------------------------------------------------------


@dataclass
class Attempt:
    """What one execution of a step gave: the outcome the engine acts on, and what the timeline shows."""

    outcome: Outcome
    step_state: str
    started_at: dt.datetime
    error_text: str = ""


def _run_step(run: WorkflowRun, step: Step) -> Attempt:
    started_at = timezone.now()
    clock = time.monotonic()
    ctx: dict[str, Any] = run.context
    try:
        outcome = step.fn(run, ctx)
        if not isinstance(outcome, Done | Wait | Retry | Fail):
            raise TypeError(f"step {step.name} returned {outcome!r}, not Done, Wait, Retry or Fail")
        if isinstance(outcome, Done) and outcome.data:
            ctx.update(outcome.data)
        json.dumps(ctx)  # refuse here what the JSON column would refuse inside the recording transaction
    except SoftTimeLimitExceeded:
        return Attempt(Retry(f"step {step.name} timed out after {step.timeout:g} s"), StepState.TIMED_OUT, started_at)
    except Exception as exc:
        log.warning("workflow run %s step %s raised", run.pk, step.name, exc_info=True)
        if not _is_json(ctx):
            run.context = _stored_context(run)  # keep the markers a step set before raising, if storable
        error = f"{type(exc).__name__}: {exc}"
        return Attempt(Retry(error), StepState.RETRYING, started_at, error_text=traceback.format_exc())
    elapsed = time.monotonic() - clock
    if elapsed > step.timeout:
        # The answer came too late to trust (the world may have moved on): try the step again.
        error = f"step {step.name} took {elapsed:.1f} s, over its {step.timeout:g} s timeout"
        return Attempt(Retry(error), StepState.TIMED_OUT, started_at)
    state = {Done: StepState.DONE, Wait: StepState.WAITING, Retry: StepState.RETRYING, Fail: StepState.FAILED}
    return Attempt(outcome, state[type(outcome)], started_at)


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _stored_context(run: WorkflowRun) -> dict[str, Any]:
    context = WorkflowRun.objects.filter(pk=run.pk).values_list("context", flat=True).first()
    return context if isinstance(context, dict) else {}


# --- recording the outcome --------------------------------------------------------------------------


def _record(run: WorkflowRun, token: str, definition: Workflow, step: Step, attempt: Attempt) -> str:
    outcome = attempt.outcome
    message, result = "", {}
    if isinstance(outcome, Done):
        result = outcome.data or {}
        following = definition.step_at(run.step_index + 1)
        if following is None:
            return _finish(run, token, definition, step, RunState.SUCCEEDED, attempt=attempt)
        return _move_on(run, token, step, following, attempt, result, after=max(outcome.after, 0.0))
    if isinstance(outcome, Fail):
        return _finish(run, token, definition, step, RunState.FAILED, error=outcome.reason, attempt=attempt)
    if isinstance(outcome, Wait):
        delay, message = max(outcome.seconds, 0.0), outcome.reason
        run.attempt = 0  # waiting is progress, not failure: attempts count again from one
    else:  # Retry
        assert isinstance(outcome, Retry)  # noqa: S101  # narrowing for mypy
        message = outcome.error
        if run.attempt >= step.max_attempts:
            error = f"step {step.name} failed after {run.attempt} attempts: {outcome.error}"
            return _finish(run, token, definition, step, RunState.FAILED, error=error, attempt=attempt)
        delay = (
            outcome.after
            if outcome.after is not None
            else backoff_delay(run.attempt, base=step.retry_base, cap=step.retry_cap)
        )
    return _sleep(run, token, step, attempt, delay, message)


def _move_on(
    run: WorkflowRun, token: str, step: Step, following: Step, attempt: Attempt, result: dict[str, Any], *, after: float
) -> str:
    """Done, and there is a next step: point the run at it and wake a worker, at once or `after` seconds.

    The same UPDATE leases the run for the next step to a fresh token that travels in the message, so the
    worker that receives it starts the step without writing first. A lost message costs the lease's
    length: then the sweeper finds the lease expired. A `Done(after=...)` longer than a sweep sends no
    message: the run waits unleased, like after a long Wait, and the sweeper wakes it.
    """
    if after >= settings.FLEET_WORKFLOW_SWEEP_SECONDS:
        return _move_on_later(run, token, step, following, attempt, result, after)
    handoff = f"handoff/{secrets.token_hex(6)}"
    lease = max(settings.FLEET_WORKFLOW_LEASE_SECONDS, lease_to_send(following.timeout))
    with transaction.atomic():
        moved = sql.move_on(
            run,
            token,
            step_index=run.step_index + 1,
            step_name=following.name,
            handoff=handoff,
            lease_seconds=lease,
            delay=after,
        )
        if not moved:
            return _lost(run, step)
        _add_step_run(run, step, attempt, result=result)
        transaction.on_commit(
            lambda: enqueue_advance(
                run.pk,
                queue=following.queue,
                step_timeout=following.timeout,
                countdown=after or None,
                lease_token=handoff,
            ),
            robust=True,
        )
    return StepState.DONE


def _move_on_later(
    run: WorkflowRun, token: str, step: Step, following: Step, attempt: Attempt, result: dict[str, Any], after: float
) -> str:
    with transaction.atomic():
        moved = sql.move_on_later(run, token, step_index=run.step_index + 1, step_name=following.name, delay=after)
        if not moved:
            return _lost(run, step)
        _add_step_run(run, step, attempt, result=result)
    return StepState.DONE


def _sleep(run: WorkflowRun, token: str, step: Step, attempt: Attempt, delay: float, message: str) -> str:
    """Wait or Retry: store when to look again. Only a wait shorter than a sweep sends a (delayed)
    message; longer ones are woken by the sweeper, so no message ever sits in the broker for long."""
    wake_at = timezone.now() + dt.timedelta(seconds=delay)
    if run.deadline is not None and run.deadline < wake_at:
        wake_at = run.deadline  # wake in time to fail at the deadline, not a long wait after it
        delay = max((wake_at - timezone.now()).total_seconds(), 0.0)
    short = delay < settings.FLEET_WORKFLOW_SWEEP_SECONDS
    with transaction.atomic():
        updated = WorkflowRun.objects.filter(pk=run.pk, lease_owner=token).update(
            state=RunState.WAITING,
            attempt=run.attempt,
            context=run.context,
            # A cancel that arrived while the step ran is acted on now, not after the wait.
            wake_at=Case(When(cancel_requested=True, then=Now()), default=Value(wake_at)),
            enqueued_at=wake_at if short else None,
            lease_owner="",
            lease_until=None,
            updated_at=Now(),
        )
        if not updated:
            return _lost(run, step)
        _add_step_run(run, step, attempt, message=message)
        if short:
            transaction.on_commit(
                lambda: enqueue_advance(run.pk, queue=step.queue, step_timeout=step.timeout, countdown=delay),
                robust=True,
            )
    return attempt.step_state


def _finish(
    run: WorkflowRun,
    token: str,
    definition: Workflow | None,
    step: Step | None,
    state: RunState,
    *,
    error: str = "",
    attempt: Attempt | None = None,
    step_state: str | None = None,
) -> str:
    """End the run (the partial unique index frees its exclusive key by the state change), record the
    step, audit, and run the definition's hooks, all in one transaction."""
    succeeded = state == RunState.SUCCEEDED
    with transaction.atomic():
        updated = WorkflowRun.objects.filter(pk=run.pk, lease_owner=token).update(
            state=state,
            error=error,
            context=run.context,
            step_index=len(definition.steps) if succeeded and definition else run.step_index,
            current_step="" if succeeded else run.current_step,
            wake_at=None,
            enqueued_at=None,
            lease_owner="",
            lease_until=None,
            finished_at=Now(),
            updated_at=Now(),
        )
        if not updated:
            return _lost(run, step)
        run.state, run.error, run.finished_at = state, error, timezone.now()
        if succeeded:
            run.current_step = ""
        if step is not None and (attempt is not None or step_state is not None):
            _add_step_run(
                run,
                step,
                attempt,
                state=step_state,
                message=error if not succeeded else "",
                result=(attempt.outcome.data or {}) if attempt and isinstance(attempt.outcome, Done) else {},
            )
        if definition is None or definition.audited:
            audit_record(
                actor=ENGINE_ACTOR,
                verb=f"workflow_{state}",
                obj=run,
                source="workflow",
                payload={"kind": run.kind, "step": step.name if step else "", "error": error},
            )
        if definition is not None:
            _run_hooks(run, definition)
    return str(state)


def _run_hooks(run: WorkflowRun, definition: Workflow) -> None:
    """on_fail (failed or cancelled), then on_finish. A hook that raises is rolled back on its own and
    noted on the run: the run's end is recorded either way."""
    hooks = [("on_fail", definition.on_fail)] if run.state != RunState.SUCCEEDED else []
    hooks.append(("on_finish", definition.on_finish))
    for name, hook in hooks:
        if hook is None:
            continue
        try:
            with transaction.atomic():
                hook(run)
        except Exception as exc:
            log.exception("workflow run %s: %s hook failed", run.pk, name)
            run.error = f"{run.error}\n{name} hook failed: {type(exc).__name__}: {exc}".strip()
            WorkflowRun.objects.filter(pk=run.pk).update(error=run.error)


def _add_step_run(
    run: WorkflowRun,
    step: Step,
    attempt: Attempt | None,
    *,
    state: str | None = None,
    message: str = "",
    result: dict[str, Any] | None = None,
) -> None:
    now = timezone.now()
    sql.insert_step_run(
        run_id=run.pk,
        step=step.name,
        attempt=max(run.attempt, 1),
        state=state or (attempt.step_state if attempt else StepState.DONE),
        started_at=attempt.started_at if attempt else now,
        finished_at=now,
        message=message[:2000],
        error=attempt.error_text if attempt else "",
        result=result or {},
    )


def _lost(run: WorkflowRun, step: Step | None) -> str:
    """Another worker took the run over (this one overran its lease): its result is not ours to record."""
    log.warning("workflow run %s: lease lost during step %s; the outcome is discarded", run.pk, step and step.name)
    return LEASE_LOST


# --- sweeping ---------------------------------------------------------------------------------------


def sweep(*, limit: int | None = None) -> int:
    """Send a wake-up message for every due run (a bounded batch); return how many were sent."""
    rows = selectors.due_runs(limit=limit or settings.FLEET_WORKFLOW_SWEEP_BATCH)
    if not rows:
        return 0
    WorkflowRun.objects.filter(pk__in=[row[0] for row in rows]).update(enqueued_at=Now())
    for run_id, kind, index in rows:
        definition = get_workflow(kind)
        step = definition.step_at(index) if definition else None
        # An unknown kind or step still gets a message: advance then fails the run with the reason.
        queue, timeout = (step.queue, step.timeout) if step else ("control", 30.0)
        enqueue_advance(run_id, queue=queue, step_timeout=timeout)
    return len(rows)


def schedule_now(run: WorkflowRun) -> None:
    """After commit, wake a worker for `run` (used by the services for a run they made due)."""
    definition = get_workflow(run.kind)
    step = definition.step_at(run.step_index) if definition else None
    queue, timeout = (step.queue, step.timeout) if step else ("control", 30.0)
    transaction.on_commit(lambda: enqueue_advance(run.pk, queue=queue, step_timeout=timeout), robust=True)
