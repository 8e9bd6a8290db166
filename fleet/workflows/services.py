"""Starting, cancelling, retrying and waking workflow runs: the doors the admin, the API, beat and other
apps use (through fleet.workflows). Each checks, writes through fleet.workflows.runs, audits, and sends
the wake-up message after the caller's transaction commits."""

import datetime as dt
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from fleet.audit.choices import Source
from fleet.audit.services import Actor, actor_name, audit_record
from fleet.errors import Conflict, Invalid
from fleet.workflows import dispatch, runs, selectors
from fleet.workflows.choices import RUN_TRANSITIONS, RunState
from fleet.workflows.definitions import get_workflow, workflow_kinds
from fleet.workflows.models import WorkflowRun


def subject_key(subject: models.Model) -> str:
    """The default exclusive key of a subject: `<model>:<pk>`, e.g. `node:42`. Only this app builds keys."""
    return f"{subject._meta.model_name}:{subject.pk}"


def subject_type(subject: models.Model) -> str:
    """How a run names its subject's model: `app_label.model`, e.g. `sites.node`."""
    return subject._meta.label_lower


def workflow_start(
    *,
    kind: str,
    subject: models.Model | None,
    actor: Actor,
    source: Source,
    context: dict[str, Any] | None = None,
    exclusive_key: str | None = None,
    deadline: dt.datetime | None = None,
) -> WorkflowRun:
    """Create a run of `kind` on `subject` and wake a worker for it once the caller's transaction commits.

    An exclusive kind gets the subject's key (`node:42`) unless `exclusive_key` is given; a second active
    run with the same key is refused by the database and answered with Conflict naming the active run.
    `deadline` defaults to now + the kind's deadline. Call it inside the transaction that changes the
    subject (e.g. node -> wiping), so the change and the run commit together. The run is due at once
    (`wake_at` and `enqueued_at` are the database's clock, by their column defaults).
    """
    definition = get_workflow(kind)
    if definition is None:
        raise Invalid(f"unknown workflow kind {kind!r}; known: {', '.join(workflow_kinds())}", field="kind")
    if definition.exclusive and exclusive_key is None:
        if subject is None:
            raise Invalid(f"workflow {kind} is exclusive: give a subject or an exclusive_key", field="exclusive_key")
        exclusive_key = subject_key(subject)
    deadline = deadline or timezone.now() + definition.deadline
    run = WorkflowRun(
        kind=kind,
        subject_type=subject_type(subject) if subject is not None else "",
        subject_id=str(subject.pk) if subject is not None else "",
        subject_repr=str(subject)[:200] if subject is not None else "",
        exclusive_key=exclusive_key,
        state=RunState.PENDING,
        current_step=definition.steps[0].name,
        context=dict(context or {}),
        deadline=deadline,
        created_by=actor if isinstance(actor, AbstractBaseUser) else None,  # type: ignore[misc]  # any user model
        created_by_repr=actor_name(actor)[:150],
    )
    with transaction.atomic():
        try:
            with transaction.atomic():  # a savepoint, so the caller's transaction survives a refusal
                run.save()
        except IntegrityError:
            raise _exclusive_conflict(exclusive_key) from None
        if definition.audited:
            audit_record(
                actor=actor,
                verb="workflow_start",
                obj=run,
                source=source,
                payload={"kind": kind, "exclusive_key": exclusive_key, "deadline": deadline.isoformat()},
            )
        dispatch.send_after_commit(run)
    return run


def workflow_cancel(*, run: WorkflowRun, actor: Actor, source: Source, reason: str = "") -> WorkflowRun:
    """Ask an active run to stop. The engine ends it `cancelled` before its next step: at once for a
    pending or waiting run, after the current step for a running one. Conflict if the run has ended."""
    with transaction.atomic():
        locked = WorkflowRun.objects.select_for_update().get(pk=run.pk)
        if RunState.CANCELLED not in RUN_TRANSITIONS[locked.state]:
            raise Conflict(f"workflow run {locked.pk} ({locked.kind}) is {locked.state}; it cannot be cancelled")
        if runs.request_cancel(locked.pk, reason):
            audit_record(actor=actor, verb="workflow_cancel", obj=locked, source=source, payload={"reason": reason})
            dispatch.send_after_commit(locked)
    locked.refresh_from_db()
    return locked


def workflow_retry(*, run: WorkflowRun, actor: Actor, source: Source) -> WorkflowRun:
    """Run a failed run again from the step that failed, with fresh attempts and a fresh deadline.

    Conflict if the run has not failed, or if another run now holds its exclusive key.
    """
    definition = get_workflow(run.kind)
    if definition is None:
        raise Conflict(f"workflow kind {run.kind!r} no longer exists; the run cannot be retried")
    with transaction.atomic():
        locked = WorkflowRun.objects.select_for_update().get(pk=run.pk)
        if RunState.PENDING not in RUN_TRANSITIONS[locked.state]:
            raise Conflict(f"workflow run {locked.pk} ({locked.kind}) is {locked.state}; only a failed run is retried")
        try:
            with transaction.atomic():
                runs.restart(locked.pk, deadline_seconds=definition.deadline.total_seconds())
        except IntegrityError:
            raise _exclusive_conflict(locked.exclusive_key) from None
        audit_record(
            actor=actor,
            verb="workflow_retry",
            obj=locked,
            source=source,
            payload={"step": locked.current_step, "previous_error": locked.error},
        )
        dispatch.send_after_commit(locked)
    locked.refresh_from_db()
    return locked


def workflow_wake(*, run: WorkflowRun) -> bool:
    """Make a pending or waiting run due now and wake a worker after commit, unless it is already due
    with a message on its way (wake-ups coalesce). False when nothing was sent (already due, running, or
    ended: a running run sees the change at its next step)."""
    if not runs.make_due(run.pk):
        return False
    dispatch.send_after_commit(run)
    return True


def _exclusive_conflict(key: str | None) -> Conflict:
    active = selectors.active_run_for_key(key) if key else None
    if active is None:  # it ended between the refusal and this read
        return Conflict(f"another workflow run holds {key}; try again")
    step = f" at step {active.current_step}" if active.current_step else ""
    return Conflict(
        f"{active.kind} run {active.pk} is {active.state}{step} on {key}: one active run at a time",
        field="exclusive_key",
    )
