"""Advancing runs: `advance` takes a run one step further, `sweep` wakes the runs nobody else will.

docs/ARCHITECTURE.md ("Durable workflows") describes the protocol with a diagram of a run's states.
"""

import secrets

from django.conf import settings

from fleet.workflows import dispatch, record, runs, selectors, timeline
from fleet.workflows.attempts import execute
from fleet.workflows.choices import Advanced, RunState, StepState
from fleet.workflows.definitions import get_workflow
from fleet.workflows.outcomes import Done, Fail, Retry, Wait
from fleet.workflows.timing import LeaseTiming, backoff_delay, claim_seconds


def advance(
    run_id: int, *, worker_id: str, lease_token: str | None = None, lease_seconds: float | None = None
) -> Advanced:
    """Advance run `run_id` by one step if it is due and nobody else holds it, and say what happened.
    Safe to call any number of times: a call for a run that is not due changes nothing.

    `lease_token` is the lease the previous step handed over with the message; without it (or when it
    is no longer valid) the lease is taken here, for `lease_seconds` when the message says how long
    the step needs.
    """
    # Start: hold the run. The lease handed over with the message, or one taken now, or nothing to do.
    run = runs.claim_handed_over(run_id, lease_token) if lease_token else None
    token = lease_token or ""
    if run is None:
        token = f"{worker_id}/{secrets.token_hex(4)}"
        run = runs.claim(run_id, token, claim_seconds(lease_seconds))
        if run is None:
            return Advanced.NOT_DUE
    definition = get_workflow(run.kind)
    step = definition.step_at(run.step_index) if definition else None
    if definition is None or step is None:
        where = f"step {run.step_index}" if definition else f"kind {run.kind!r}"
        return record.end(run, token, definition, step, RunState.FAILED, error=f"unknown workflow {where}")
    if run.cancel_requested:
        reason = f"cancelled: {run.cancel_reason}" if run.cancel_reason else "cancelled"
        return record.end(
            run, token, definition, step, RunState.CANCELLED, error=reason, step_state=StepState.CANCELLED
        )
    if run.overdue:
        error = f"deadline {run.deadline:%Y-%m-%d %H:%M:%S} UTC passed before step {step.name}"
        return record.end(run, token, definition, step, RunState.FAILED, error=error, step_state=StepState.FAILED)
    if run.attempt > 1:
        timeline.add_lost_attempt(run, step.name)
    if run.attempt > step.max_attempts:
        error = f"step {step.name} gave no outcome in {step.max_attempts} attempts (worker lost or lease expired)"
        return record.end(run, token, definition, step, RunState.FAILED, error=error)
    needed = LeaseTiming.of(step.timeout).needed
    if run.lease_left < needed and not runs.extend(run.pk, token, needed):
        return Advanced.LEASE_LOST

    # Run: one attempt at the step, outside any transaction (Celery's soft limit interrupts a stuck one).
    attempt = execute(run, step)

    # Terminate: record the outcome, if the lease is still ours, and when the run is due next.
    outcome = attempt.outcome
    if isinstance(outcome, Done):
        following = definition.step_at(run.step_index + 1)
        if following is None:
            return record.end(run, token, definition, step, RunState.SUCCEEDED, attempt=attempt)
        return record.move_on(run, token, step, following, attempt, after=max(outcome.after, 0.0))
    if isinstance(outcome, Fail):
        return record.end(run, token, definition, step, RunState.FAILED, error=outcome.reason, attempt=attempt)
    if isinstance(outcome, Wait):
        return record.park(run, token, step, attempt, delay=max(outcome.seconds, 0.0), message=outcome.reason)
    assert isinstance(outcome, Retry)  # noqa: S101  # narrowing for mypy
    if run.attempt >= step.max_attempts:
        error = f"step {step.name} failed after {run.attempt} attempts: {outcome.error}"
        return record.end(run, token, definition, step, RunState.FAILED, error=error, attempt=attempt)
    delay = (
        outcome.after
        if outcome.after is not None
        else backoff_delay(run.attempt, base=step.retry_base, cap=step.retry_cap)
    )
    return record.park(run, token, step, attempt, delay=delay, message=outcome.error)


def sweep(*, limit: int | None = None) -> int:
    """Send a wake-up message for every run that is due with none in flight (waits that ended, leases
    of lost workers, messages a broker lost), oldest first, a bounded batch; return how many."""
    rows = selectors.due_runs(limit=limit or settings.FLEET_WORKFLOW_SWEEP_BATCH)
    if not rows:
        return 0
    runs.mark_sent([run_id for run_id, _kind, _index in rows])
    for run_id, kind, index in rows:
        queue, timeout = dispatch.route(kind, index)
        dispatch.enqueue_advance(run_id, queue=queue, step_timeout=timeout, label=f"{kind} run {run_id} (sweep)")
    return len(rows)
