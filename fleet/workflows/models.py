"""WorkflowRun and StepRun: the stored truth of every long-running operation.

Celery messages only wake runs up; what a run has done, is doing and waits for is in these rows, so a
lost message, a killed worker or a restarted broker costs a delay, never a run.
"""

from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

from fleet.workflows.choices import ACTIVE_STATES, RunState, StepState


class WorkflowRun(models.Model):
    """One execution of a workflow kind on a subject (a node, a site, a site rollout...).

    The subject is named generically (`subject_type` is `app_label.model`, `subject_id` its primary key)
    so any app can run workflows without this app knowing its models. `step_index`/`current_step` say
    which step runs next; `attempt` counts the leases taken for it since the run last made progress. A
    run is due when `wake_at` has passed; a worker advancing it holds a lease (`lease_owner` until
    `lease_until`); `enqueued_at` is when the last wake-up message was sent (NULL: none in flight), so the
    sweeper re-sends only lost ones. Those four are written by fleet/workflows/runs.py only, on the
    database's clock (a new run is due at once: their database default).
    """

    kind = models.CharField(max_length=64, db_index=True)
    subject_type = models.CharField(max_length=100, blank=True, help_text="app_label.model, e.g. sites.node")
    subject_id = models.CharField(max_length=64, blank=True)
    subject_repr = models.CharField(max_length=200, blank=True)
    # NULL, not "": runs without a key must not collide in the unique index below.
    exclusive_key = models.CharField(  # noqa: DJ001
        max_length=150, null=True, blank=True, help_text="at most one active run per key, e.g. node:42"
    )
    state = models.CharField(max_length=16, choices=RunState.choices, default=RunState.PENDING)
    step_index = models.PositiveIntegerField(default=0)
    current_step = models.CharField(max_length=64, blank=True)
    context = models.JSONField(default=dict, blank=True)
    attempt = models.PositiveIntegerField(
        default=0, help_text="leases taken for the current step since the run last made progress"
    )
    wake_at = models.DateTimeField(null=True, blank=True, db_default=Now(), help_text="due from then on")
    enqueued_at = models.DateTimeField(
        null=True, blank=True, db_default=Now(), help_text="when the last wake-up message was sent (empty: none)"
    )
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    cancel_reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_repr = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Not columns: computed by the database on the rows fleet/workflows/runs.py claims (seconds of lease
    # left, and whether the deadline has passed), so the engine never compares its clock with the rows'.
    lease_left: float
    overdue: bool

    class Meta:
        ordering = ["-id"]
        constraints = [
            # The database, not a check-then-insert, keeps a second exclusive run out: "wipe this node"
            # during its provisioning fails here and the service answers 409 naming the running one.
            models.UniqueConstraint(
                fields=["exclusive_key"],
                condition=Q(state__in=sorted(ACTIVE_STATES)),
                name="workflows_one_active_run_per_key",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "wake_at"], name="workflows_run_due"),
            models.Index(fields=["state", "lease_until"], name="workflows_run_lease"),
            models.Index(fields=["subject_type", "subject_id"], name="workflows_run_subject"),
        ]
        permissions = [("cancel_workflowrun", "Can cancel a workflow run")]

    def __str__(self) -> str:
        subject = f" {self.subject_repr}" if self.subject_repr else ""
        return f"{self.kind}{subject} #{self.pk}"

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    def get_subject(self) -> Any:
        """The subject's model instance (for steps), or None when the run has none or it was deleted."""
        if not self.subject_type or not self.subject_id:
            return None
        model = apps.get_model(self.subject_type)
        return model._default_manager.filter(pk=self.subject_id).first()


class StepRun(models.Model):
    """One attempt at one step of a run and what came of it: the run's timeline, newest last.

    Written with the outcome, in the transaction that moves the run on (fleet/workflows/timeline.py);
    `error` keeps a traceback when the step raised, `result` the data a Done merged into the context.
    Consecutive waits of one step are one row: `polls` counts them, `started_at` is the first poll's
    start and `finished_at` the last one's end, `message` the last one's.
    """

    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="steps")
    step = models.CharField(max_length=64)
    attempt = models.PositiveIntegerField(default=1)
    state = models.CharField(max_length=16, choices=StepState.choices)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    message = models.TextField(blank=True)
    error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    # A database default too, so a worker still running the previous release inserts rows during a deploy.
    polls = models.PositiveIntegerField(default=1, db_default=1, help_text="polls merged into this waiting row")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.step} #{self.attempt}: {self.state}"
