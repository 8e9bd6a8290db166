"""The durable workflow engine's public API: the one module other apps import.

    from fleet.workflows import Done, Fail, Retry, Step, Wait, Workflow, errors_as_outcomes, register

    register(Workflow(kind="node.wipe", steps=[Step("cordon", cordon, queue="io"), ...], exclusive=True))
    run = start(kind="node.wipe", subject=node, actor=user, source=Source.API, context={"reason": reason})

Apps declare workflows and steps, start, cancel, retry and wake runs, and read them; the run's columns
(due times, leases, attempts) and its exclusive keys belong to the engine (scripts/check_workflow_boundary.py
enforces it in `make lint`). docs/ARCHITECTURE.md ("Durable workflows") describes the protocol.

This module is imported while Django loads its apps, before models can be: the functions below import
the services when called, and `WorkflowRun` / `StepRun` are resolved on first use.
"""

import datetime as dt
from typing import TYPE_CHECKING, Any

from fleet.audit.choices import Source
from fleet.workflows.choices import ACTIVE_STATES, TERMINAL_STATES, RunState, StepState
from fleet.workflows.definitions import Step, Workflow, register
from fleet.workflows.outcomes import Done, Fail, Outcome, Retry, StepFn, Stop, Wait, errors_as_outcomes, subject_or_stop

if TYPE_CHECKING:
    from django.db.models import Model, QuerySet

    from fleet.audit.services import Actor
    from fleet.workflows.models import StepRun, WorkflowRun

__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "Done",
    "Fail",
    "Outcome",
    "Retry",
    "RunState",
    "Step",
    "StepRun",
    "StepFn",
    "StepState",
    "Stop",
    "Wait",
    "Workflow",
    "WorkflowRun",
    "active_run",
    "cancel",
    "errors_as_outcomes",
    "register",
    "retry",
    "runs_of",
    "start",
    "subject_or_stop",
    "wake",
]


def start(
    *,
    kind: str,
    subject: "Model | None",
    actor: "Actor",
    source: Source,
    context: dict[str, Any] | None = None,
    exclusive_key: str | None = None,
    deadline: dt.datetime | None = None,
) -> "WorkflowRun":
    """Start a run of `kind` on `subject`, due at once; its message is sent when the caller's transaction
    commits. An exclusive kind refuses a second active run on the same subject (Conflict, 409)."""
    from fleet.workflows import services

    return services.workflow_start(
        kind=kind,
        subject=subject,
        actor=actor,
        source=source,
        context=context,
        exclusive_key=exclusive_key,
        deadline=deadline,
    )


def cancel(*, run: "WorkflowRun", actor: "Actor", source: Source, reason: str = "") -> "WorkflowRun":
    """Ask an active run to stop before its next step (Conflict if it has ended)."""
    from fleet.workflows import services

    return services.workflow_cancel(run=run, actor=actor, source=source, reason=reason)


def retry(*, run: "WorkflowRun", actor: "Actor", source: Source) -> "WorkflowRun":
    """Run a failed run again from the step that failed (Conflict otherwise)."""
    from fleet.workflows import services

    return services.workflow_retry(run=run, actor=actor, source=source)


def wake(run: "WorkflowRun") -> bool:
    """Make a waiting run due now (after commit, a worker looks at it); wake-ups that come together
    cost one step. False when nothing was sent (already due, running or ended)."""
    from fleet.workflows import services

    return services.workflow_wake(run=run)


def active_run(subject: "Model | None" = None, *, key: str | None = None) -> "WorkflowRun | None":
    """The active run holding `subject`'s exclusive key (or the explicit `key` a run was started with)."""
    from fleet.workflows import selectors, services

    if key is None:
        if subject is None:
            raise TypeError("active_run needs a subject or a key")
        key = services.subject_key(subject)
    return selectors.active_run_for_key(key)


def runs_of(subjects: "Model | QuerySet[Any]") -> "QuerySet[WorkflowRun]":
    """Every run on `subjects`, newest first: one model instance (`runs_of(node)`), or a queryset of one
    model's rows (`runs_of(rollout.site_rollouts.all())`, one query however many rows it names)."""
    from fleet.workflows import selectors

    return selectors.runs_of(subjects)


def __getattr__(name: str) -> Any:
    """`WorkflowRun` and `StepRun`, imported when first asked for (models cannot load with this module)."""
    if name in ("WorkflowRun", "StepRun"):
        from fleet.workflows import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
