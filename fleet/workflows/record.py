"""Recording a step's outcome: one transaction each, conditional on the lease, with its timeline row, and
the wake-up message (if any) sent after commit. engine.advance decides which; these carry it out.

- `move_on`: Done, and a next step. Due now or in a moment (within a sweep): the lease for it is handed
  to the message ("now"). Due later: no lease, no message; the sweeper sends one when it is due ("later").
- `park`: Wait or Retry, the same step again. A short delay sends a delayed message; a longer one is
  left to the sweeper. Either way the lease is released, so a cancel or a wake-up can take the run.
- `end`: the run ends; its hooks and the audit entry are in the same transaction.

A worker that lost its lease meanwhile records nothing (`LEASE_LOST`); the one that took the run over
records its own outcome. Every message can be lost: the sweeper re-sends it ("lost").
"""

import logging
import secrets
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from fleet.audit.choices import Source, SystemActor
from fleet.audit.services import audit_record
from fleet.workflows import dispatch, runs, timeline
from fleet.workflows.attempts import Attempt
from fleet.workflows.choices import Advanced, RunState, StepState
from fleet.workflows.definitions import Step, Workflow
from fleet.workflows.models import WorkflowRun
from fleet.workflows.outcomes import Done, Wait
from fleet.workflows.timing import LeaseTiming

log = logging.getLogger(__name__)

ENGINE_ACTOR = SystemActor.WORKFLOW


def move_on(run: WorkflowRun, token: str, step: Step, following: Step, attempt: Attempt, *, after: float) -> Advanced:
    """Done: point the run at `following`, due in `after` seconds, and wake a worker for it."""
    result = (attempt.outcome.data if isinstance(attempt.outcome, Done) else None) or {}
    later = after >= settings.FLEET_WORKFLOW_SWEEP_SECONDS
    handover = f"handoff/{secrets.token_hex(6)}"
    index = run.step_index + 1
    with transaction.atomic():
        if later:
            moved = runs.move_on_later(run, token, step_index=index, step_name=following.name, delay=after)
        else:
            lease = LeaseTiming.of(following.timeout).lease
            moved = runs.move_on_now(
                run,
                token,
                step_index=index,
                step_name=following.name,
                handover=handover,
                lease_seconds=lease,
                delay=after,
            )
        if not moved:
            return lost(run, step)
        _add_step(run, step, attempt, result=result)
        if not later:
            transaction.on_commit(
                lambda: dispatch.enqueue_advance(
                    run.pk,
                    queue=following.queue,
                    step_timeout=following.timeout,
                    countdown=after or None,
                    lease_token=handover,
                    label=f"{run.kind} run {run.pk} at {following.name}: {run.subject_repr}",
                ),
                robust=True,
            )
    return Advanced.DONE


def park(run: WorkflowRun, token: str, step: Step, attempt: Attempt, *, delay: float, message: str) -> Advanced:
    """Wait or Retry: run the same step again in `delay` seconds. A Wait is progress (the attempts
    count from one again) and repeated waits share one timeline row; a Retry counts against max_attempts."""
    waiting = isinstance(attempt.outcome, Wait)
    short = delay < settings.FLEET_WORKFLOW_SWEEP_SECONDS
    with transaction.atomic():
        if not runs.park(run, token, delay=delay, progress=waiting, message_sent=short):
            return lost(run, step)
        if waiting:
            timeline.add_wait(
                run_id=run.pk,
                step=step.name,
                attempt=max(run.attempt, 1),
                started_at=attempt.started_at,
                finished_at=timezone.now(),
                message=message,
            )
        else:
            _add_step(run, step, attempt, message=message)
        if short:
            transaction.on_commit(
                lambda: dispatch.enqueue_advance(
                    run.pk,
                    queue=step.queue,
                    step_timeout=step.timeout,
                    countdown=delay,
                    label=f"{run.kind} run {run.pk} at {step.name}: {run.subject_repr}",
                ),
                robust=True,
            )
    return Advanced.WAITING if waiting else Advanced.RETRYING


def end(
    run: WorkflowRun,
    token: str,
    definition: Workflow | None,
    step: Step | None,
    state: RunState,
    *,
    error: str = "",
    attempt: Attempt | None = None,
    step_state: str | None = None,
) -> Advanced:
    """End the run in `state`: the run row, the step's row (when there was an attempt or a `step_state`
    to show), the audit entry and the definition's hooks, in one transaction."""
    succeeded = state == RunState.SUCCEEDED
    index = len(definition.steps) if succeeded and definition else run.step_index
    current = "" if succeeded else run.current_step
    with transaction.atomic():
        if not runs.finish(run, token, state=state, error=error, step_index=index, current_step=current):
            return lost(run, step)
        run.state, run.error, run.finished_at, run.step_index, run.current_step = (
            state,
            error,
            timezone.now(),
            index,
            current,
        )
        if step is not None and (attempt is not None or step_state is not None):
            result = attempt.outcome.data if attempt and isinstance(attempt.outcome, Done) else None
            _add_step(run, step, attempt, state=step_state, message="" if succeeded else error, result=result or {})
        if definition is None or definition.audited:
            audit_record(
                actor=ENGINE_ACTOR,
                verb=f"workflow_{state}",
                obj=run,
                source=Source.WORKFLOW,
                payload={"kind": run.kind, "step": step.name if step else "", "error": error},
            )
        if definition is not None:
            _run_hooks(run, definition)
    return Advanced.FINISHED


def lost(run: WorkflowRun, step: Step | None) -> Advanced:
    """Another worker took the run over (this one overran its lease): its result is not ours to record."""
    log.warning("workflow run %s: lease lost during step %s; the outcome is discarded", run.pk, step and step.name)
    return Advanced.LEASE_LOST


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
            runs.note_error(run.pk, run.error)


def _add_step(
    run: WorkflowRun,
    step: Step,
    attempt: Attempt | None,
    *,
    state: str | None = None,
    message: str = "",
    result: dict[str, Any] | None = None,
) -> None:
    now = timezone.now()
    timeline.add(
        run_id=run.pk,
        step=step.name,
        attempt=max(run.attempt, 1),
        state=state or (attempt.step_state if attempt else StepState.DONE),
        started_at=attempt.started_at if attempt else now,
        finished_at=now,
        message=message,
        error=attempt.error_text if attempt else "",
        result=result,
    )
