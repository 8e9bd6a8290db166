"""Admin pages for workflow runs: read-only lists and step timelines, and a Cancel action that asks why.

Runs are written only by the engine and the services; the Cancel action calls workflow_cancel, so it is
refused and audited exactly as through the API.
"""

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html

from fleet.admin_display import badge
from fleet.admin_readonly import ReadOnlyAdmin, ReadOnlyInline
from fleet.audit.choices import Source
from fleet.errors import FleetError
from fleet.workflows.api.serializers import public_context
from fleet.workflows.choices import ACTIVE_STATES, StepState
from fleet.workflows.models import StepRun, WorkflowRun
from fleet.workflows.services import workflow_cancel

# Step outcomes mapped onto the badge colours of run states.
STEP_BADGE_STATE: dict[str, str] = {
    StepState.RUNNING: "running",
    StepState.DONE: "succeeded",
    StepState.WAITING: "waiting",
    StepState.RETRYING: "degraded",
    StepState.TIMED_OUT: "degraded",
    StepState.FAILED: "failed",
    StepState.CANCELLED: "cancelled",
}
MAX_RUNS_PER_CANCEL = 200


class StepRunInline(ReadOnlyInline):
    """The run's timeline, oldest first, newest last; a waiting row counts its polls (first to last)."""

    model = StepRun
    fields = ("step", "attempt", "state_badge", "polls", "started_at", "finished_at", "message", "error_summary")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("id",)

    @admin.display(description="outcome")
    def state_badge(self, step: StepRun) -> str:
        return badge(STEP_BADGE_STATE.get(step.state, "unknown"), step.get_state_display())

    @admin.display(description="error")
    def error_summary(self, step: StepRun) -> str:
        if not step.error:
            return "-"
        last_line = step.error.strip().splitlines()[-1]
        return format_html("<details><summary>{}</summary><pre>{}</pre></details>", last_line, step.error)


class CancelForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="kept in the audit log")


@admin.register(WorkflowRun)
class WorkflowRunAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "kind",
        "subject_repr",
        "state_badge",
        "current_step",
        "attempt",
        "wake_at",
        "created_by_repr",
        "created_at",
        "finished_at",
    ]
    list_filter = ["kind", "state", "cancel_requested", "subject_type"]
    search_fields = ["subject_repr", "=id", "exclusive_key"]
    date_hierarchy = "created_at"
    inlines = [StepRunInline]
    actions = ["cancel_runs"]
    list_per_page = 100
    show_full_result_count = False
    fieldsets = [
        (None, {"fields": ["kind", "state_badge", "subject_type", "subject_id", "subject_repr", "exclusive_key"]}),
        ("Progress", {"fields": ["current_step", "step_index", "attempt", "wake_at", "deadline", "error"]}),
        ("Lease", {"fields": ["lease_owner", "lease_until", "enqueued_at"], "classes": ["collapse"]}),
        ("Cancellation", {"fields": ["cancel_requested", "cancel_reason"]}),
        ("Context", {"fields": ["context_shown"]}),
        ("History", {"fields": ["created_by_repr", "created_at", "started_at", "finished_at", "updated_at"]}),
    ]
    readonly_fields = [
        "kind",
        "state_badge",
        "subject_type",
        "subject_id",
        "subject_repr",
        "exclusive_key",
        "current_step",
        "step_index",
        "attempt",
        "wake_at",
        "deadline",
        "error",
        "lease_owner",
        "lease_until",
        "enqueued_at",
        "cancel_requested",
        "cancel_reason",
        "context_shown",
        "created_by_repr",
        "created_at",
        "started_at",
        "finished_at",
        "updated_at",
    ]

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("workflows.cancel_workflowrun"))

    @admin.display(description="state", ordering="state")
    def state_badge(self, run: WorkflowRun) -> str:
        label = f"{run.state} (cancelling)" if run.cancel_requested and run.is_active else None
        return badge(run.state, label)

    @admin.display(description="context")
    def context_shown(self, run: WorkflowRun) -> str:
        return format_html("<pre>{}</pre>", json.dumps(public_context(run.context or {}), indent=2, sort_keys=True))

    @admin.action(description="Cancel selected runs…", permissions=["cancel"])
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[WorkflowRun]) -> HttpResponse | None:
        """First a confirmation page asking for the reason; then workflow_cancel for each active run."""
        runs = list(queryset.filter(state__in=ACTIVE_STATES)[: MAX_RUNS_PER_CANCEL + 1])
        if not runs:
            self.message_user(request, "None of the selected runs is active.", messages.WARNING)
            return None
        if len(runs) > MAX_RUNS_PER_CANCEL:
            self.message_user(request, f"Select at most {MAX_RUNS_PER_CANCEL} active runs.", messages.ERROR)
            return None
        form = CancelForm(request.POST if "confirm" in request.POST else None)
        if form.is_bound and form.is_valid():
            cancelled = 0
            for run in runs:
                try:
                    workflow_cancel(
                        run=run, actor=request.user, source=Source.ADMIN, reason=form.cleaned_data["reason"]
                    )
                    cancelled += 1
                except FleetError as exc:
                    self.message_user(request, f"Run {run.pk}: {exc.message}", messages.ERROR)
            self.message_user(request, f"Asked {cancelled} run(s) to stop; each ends before its next step.")
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Cancel workflow runs",
            "runs": runs,
            "form": form,
            "opts": self.model._meta,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/workflows/workflowrun/cancel_confirmation.html", context)
