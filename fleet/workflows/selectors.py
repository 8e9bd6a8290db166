"""Reads of workflow runs that other apps, the API, the admin and the sweeper share."""

import datetime as dt
from typing import Any

from django.conf import settings
from django.db.models import CharField, Model, Prefetch, Q, QuerySet
from django.db.models.functions import Cast, Now

from fleet.workflows.choices import ACTIVE_STATES
from fleet.workflows.models import StepRun, WorkflowRun


def run_list() -> QuerySet[WorkflowRun]:
    """Runs with their steps in two queries, whatever the page size (API list and detail)."""
    return WorkflowRun.objects.prefetch_related(Prefetch("steps", queryset=StepRun.objects.order_by("id")))


def runs_for_subject(subject_type: str, subject_id: object) -> QuerySet[WorkflowRun]:
    """Every run on one subject (e.g. `"sites.node", 42`), newest first."""
    return WorkflowRun.objects.filter(subject_type=subject_type, subject_id=str(subject_id)).order_by("-id")


def runs_of(subjects: Model | QuerySet[Any]) -> QuerySet[WorkflowRun]:
    """Every run on `subjects`, newest first: a model instance, or a queryset of one model's rows (their
    keys are a subquery, so a rollout's thousands of site rollouts are one query, not a list of ids)."""
    if isinstance(subjects, QuerySet):
        keys = subjects.order_by().annotate(run_subject_id=Cast("pk", CharField())).values("run_subject_id")
        return WorkflowRun.objects.filter(subject_type=subjects.model._meta.label_lower, subject_id__in=keys).order_by(
            "-id"
        )
    return runs_for_subject(subjects._meta.label_lower, subjects.pk)


def active_run_for_key(key: str) -> WorkflowRun | None:
    """The run that holds exclusive key `key` right now, if any."""
    return WorkflowRun.objects.filter(exclusive_key=key, state__in=ACTIVE_STATES).first()


def due_runs(*, limit: int) -> list[tuple[int, str, int]]:
    """(id, kind, step_index) of active runs that need a wake-up message: due, and either holding a lease
    that expired (its worker died, or the message carrying the lease was lost: recover within the lease)
    or not leased with no message in flight (or one sent so long ago that it must be lost). Oldest
    wake-up first; the (state, wake_at) index serves it."""
    redeliver = dt.timedelta(seconds=settings.FLEET_WORKFLOW_REDELIVER_SECONDS)
    rows = (
        WorkflowRun.objects.filter(state__in=ACTIVE_STATES, wake_at__lte=Now())
        .filter(
            Q(lease_until__lt=Now())
            | Q(lease_until__isnull=True, enqueued_at__isnull=True)
            | Q(lease_until__isnull=True, enqueued_at__lt=Now() - redeliver)
        )
        .order_by("wake_at")
        .values_list("id", "kind", "step_index")[:limit]
    )
    return list(rows)
