"""Admin pages for workflow runs: read-only lists and step timelines, and a Cancel action that asks why.

A run's page reads as a timeline (fleet.workflows.timeline_view, template workflowrun/change_form.html).
Runs are written only by the engine and the services; the Cancel action calls workflow_cancel, so it is
refused and audited exactly as through the API.
"""

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html

from fleet.admin_display import badge
from fleet.admin_readonly import ReadOnlyAdmin
from fleet.audit.choices import Source
from fleet.errors import FleetError
from fleet.workflows.api.serializers import public_context
from fleet.workflows.choices import ACTIVE_STATES, StepState
from fleet.workflows.models import WorkflowRun
from fleet.workflows.services import workflow_cancel
from fleet.workflows.timeline_view import Timeline, run_timeline

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


def _step_badge(state: str) -> str:
    return badge(STEP_BADGE_STATE.get(state, "unknown"), StepState(state).label if state in StepState.values else state)


def _shown(timeline: Timeline) -> dict[str, Any]:
    """The timeline with its badges, for the template."""
    return {
        "now": timeline.now,
        "hidden": timeline.hidden,
        "groups": [
            {
                "step": g.step,
                "attempts": g.attempts,
                "badge": _step_badge(g.outcome),
                "started_at": g.started_at,
                "finished_at": g.finished_at,
                "lines": [
                    {
                        "line": line,
                        "badge": _step_badge(line.state),
                        "error_last": line.error.strip().splitlines()[-1] if line.error.strip() else "",
                    }
                    for line in g.lines
                ],
            }
            for g in timeline.groups
        ],
    }


class CancelForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="kept in the audit log")


@admin.register(WorkflowRun)
class WorkflowRunAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "kind",
        "subject_shown",
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

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        """The run's fields, and above them its timeline (fleet.workflows.timeline_view): each step once
        with its attempts, repeated polls as one line, what it waits for now and until when."""
        run = self.get_object(request, object_id)
        extra = {"timeline": _shown(run_timeline(run))} if run is not None else {}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

    @admin.display(description="subject", ordering="subject_repr")
    def subject_shown(self, run: WorkflowRun) -> str:
        return run.subject_repr or "-"

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
