"""Admin pages for releases and rollouts: applications, releases (read-only once locked), plans with a
dry-run page, rollouts with per-wave progress bars, failing sites and action buttons.

Every save and action goes through rollouts.services (fleet.admin_forms), so the admin validates,
audits and refuses exactly as the API does. Rollouts and site rollouts are read-only records here;
they change only through the action buttons (confirmation page, reason) and the workflow.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from fleet.admin_display import _HEX, BADGE_COLOURS, badge
from fleet.admin_forms import ServiceAdminMixin, ServiceForm
from fleet.admin_readonly import ReadOnlyAdmin, ReadOnlyInline
from fleet.audit.choices import Source
from fleet.errors import FleetError
from rollouts import approvals, dry_runs, selectors, services
from rollouts.choices import (
    ROLLOUT_ROLLBACK_STATES,
    ROLLOUT_TRANSITIONS,
    DryRunState,
    RolloutState,
    SiteRolloutState,
    SkipReason,
)
from rollouts.models import (
    SITE_STATES,
    Application,
    Release,
    Rollout,
    RolloutPlan,
    RolloutWave,
    SiteCounters,
    SiteRollout,
    SiteSyncState,
)
from rollouts.planning import describe_gates

# --- display helpers --------------------------------------------------------------------------------


def _colour(state: str) -> str:
    return _HEX[next((c for c, states in BADGE_COLOURS.items() if state in states), "grey")]


def progress_bar(counts: dict[str, int], total: int, width: int = 220) -> SafeString:
    """A stacked bar of site states, from the counters (no query)."""
    if not total:
        return format_html('<span style="color:#666">no sites</span>')
    segments = format_html_join(
        "",
        '<span title="{}: {}" style="display:inline-block;height:10px;width:{}px;background:{}"></span>',
        (
            (state, counts[state], max(1, round(width * counts[state] / total)), _colour(state))
            for state in SITE_STATES
            if counts.get(state)
        ),
    )
    done = sum(counts.get(s, 0) for s in ("succeeded", "failed", "rolled_back", "skipped"))
    return format_html(
        '<span style="display:inline-flex;width:{}px;background:#eee;border-radius:3px;overflow:hidden;'
        'vertical-align:middle">{}</span> <small>{}/{}</small>',
        width,
        segments,
        done,
        total,
    )


def skipped_summary(counters: SiteCounters) -> SafeString:
    """`3 could not be reached, 1 never started`: why the skipped sites were skipped (none count as failed)."""
    shown = [(label.lower(), counters.skipped_counts[reason]) for reason, label in SkipReason.choices]
    shown = [(label, n) for label, n in shown if n]
    if not shown:
        return format_html("{}", "-")
    return format_html_join(", ", "{} {}", ((n, label) for label, n in shown))


def counts_summary(counts: dict[str, int]) -> SafeString:
    shown = [(state, n) for state, n in counts.items() if n]
    if not shown:
        return format_html("-")
    return format_html_join(" ", "{} {}", ((badge(state), n) for state, n in shown))


# --- applications -----------------------------------------------------------------------------------


class ApplicationForm(ServiceForm):
    class Meta:
        model = Application
        fields = list(services.APPLICATION_FIELDS)

    def apply(self, actor: Any) -> Application:
        data = {f: self.cleaned_data[f] for f in services.APPLICATION_FIELDS if f in self.cleaned_data}
        if self.instance.pk is None:
            return services.application_create(actor=actor, source=Source.ADMIN, **data)
        return services.application_update(application=self.instance, actor=actor, source=Source.ADMIN, **data)


@admin.register(Application)
class ApplicationAdmin(ServiceAdminMixin, admin.ModelAdmin):
    form = ApplicationForm
    list_display = ["name", "team", "namespace", "stateful", "updated_at"]
    list_filter = ["team", "stateful"]
    search_fields = ["name", "team", "namespace"]

    def delete_model(self, request: HttpRequest, obj: Application) -> None:
        services.application_delete(application=obj, actor=request.user, source=Source.ADMIN)

    def has_delete_permission(self, request: HttpRequest, obj: Application | None = None) -> bool:
        return False  # bulk deletes would skip the service; delete through the API if it has no release


# --- releases ---------------------------------------------------------------------------------------


class ReleaseForm(ServiceForm):
    class Meta:
        model = Release
        fields = ["application", *services.RELEASE_FIELDS]

    def apply(self, actor: Any) -> Release:
        if self.instance.pk is not None and self.instance.locked:
            return self.instance  # every field is read-only: nothing to save
        data = self.cleaned_data
        if self.instance.pk is None:
            return services.release_create(
                actor=actor,
                source=Source.ADMIN,
                application=data["application"],
                version=data["version"],
                templates=data["templates"],
                values=data.get("values") or {},
            )
        return services.release_update(
            release=self.instance,
            actor=actor,
            source=Source.ADMIN,
            version=data["version"],
            templates=data["templates"],
            values=data.get("values") or {},
        )


@admin.register(Release)
class ReleaseAdmin(ServiceAdminMixin, admin.ModelAdmin):
    form = ReleaseForm
    list_display = ["__str__", "application", "version", "locked_badge", "created_by", "created_at"]
    list_filter = ["application", ("locked_at", admin.EmptyFieldListFilter)]
    search_fields = ["version", "application__name"]
    list_select_related = ["application", "created_by"]

    def get_readonly_fields(self, request: HttpRequest, obj: Release | None = None) -> Any:
        if obj is not None and obj.locked:
            return ["application", "version", "templates", "values", "created_by", "created_at", "locked_at"]
        return ["created_by", "created_at", "locked_at"] if obj else []

    @admin.display(description="locked", ordering="locked_at")
    def locked_badge(self, release: Release) -> str:
        return badge("succeeded", "locked") if release.locked else badge("pending", "editable")

    def has_delete_permission(self, request: HttpRequest, obj: Release | None = None) -> bool:
        return False  # a used release is history; an unused one is deleted through the API


# --- plans ------------------------------------------------------------------------------------------


class RolloutPlanForm(ServiceForm):
    class Meta:
        model = RolloutPlan
        fields = list(services.PLAN_FIELDS)

    def apply(self, actor: Any) -> RolloutPlan:
        data = {f: self.cleaned_data[f] for f in services.PLAN_FIELDS if f in self.cleaned_data}
        data["cron"] = (data.get("cron") or "").strip()
        if self.instance.pk is None:
            return services.rollout_plan_create(actor=actor, source=Source.ADMIN, **data)
        return services.rollout_plan_update(plan=self.instance, actor=actor, source=Source.ADMIN, **data)


class ReasonForm(forms.Form):
    reason = forms.CharField(required=False, max_length=500, widget=forms.TextInput(attrs={"size": 60}))

    def __init__(self, *args: Any, required: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reason"].required = required  # start, cancel and roll back: the services insist too


# Actions whose reason is required (rollouts.services refuses them without one from a person).
REASON_REQUIRED = frozenset({"start", "cancel", "rollback"})


@admin.register(RolloutPlan)
class RolloutPlanAdmin(ServiceAdminMixin, admin.ModelAdmin):
    form = RolloutPlanForm
    list_display = ["name", "release", "target", "waves_summary", "max_parallel", "schedule", "dry_run_link"]
    list_filter = ["release__application", "require_approval", "low_risk", "respect_windows"]
    search_fields = ["name", "release__version", "release__application__name"]
    list_select_related = ["release__application"]
    readonly_fields = ["low_risk_by", "low_risk_at", "created_by", "last_edited_by", "created_at", "updated_at"]

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/dry-run/", view(self.dry_run_view), name="rollouts_rolloutplan_dry_run"),
            path("<int:pk>/start/", view(self.start_view), name="rollouts_rolloutplan_start"),
            *super().get_urls(),
        ]

    @admin.display(description="waves")
    def waves_summary(self, plan: RolloutPlan) -> str:
        parts = []
        for wave in plan.waves:
            size = (
                f"{len(wave['sites'])} site(s)"
                if "sites" in wave
                else (f"{wave['percent']}%" if "percent" in wave else f"{wave.get('count')} site(s)")
            )
            parts.append(f"{wave.get('name', '')} {size}".strip())
        return " → ".join(parts)

    @admin.display(description="schedule")
    def schedule(self, plan: RolloutPlan) -> str:
        if plan.cron:
            return f"cron {plan.cron} ({plan.timezone})"
        return f"at {plan.start_at:%Y-%m-%d %H:%M %Z}" if plan.start_at else "-"

    @admin.display(description="")
    def dry_run_link(self, plan: RolloutPlan) -> str:
        return format_html('<a href="{}">dry run</a>', reverse("admin:rollouts_rolloutplan_dry_run", args=[plan.pk]))

    def delete_model(self, request: HttpRequest, obj: RolloutPlan) -> None:
        services.rollout_plan_delete(plan=obj, actor=request.user, source=Source.ADMIN)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[RolloutPlan]) -> None:
        for plan in queryset:
            services.rollout_plan_delete(plan=plan, actor=request.user, source=Source.ADMIN)

    def dry_run_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The plan's latest dry run: running (with its progress; the page refreshes), or its waves and
        windows, or the error naming the site and the limit. POST starts one in the background
        (rollouts.dry_runs, permission rollouts.add_dryrun); it never renders inside the request."""
        plan = get_object_or_404(RolloutPlan.objects.select_related("release__application"), pk=pk)
        if not self.has_view_permission(request, plan):
            raise PermissionDenied
        here = reverse("admin:rollouts_rolloutplan_dry_run", args=[plan.pk])
        if request.method == "POST":
            try:
                dry_runs.dry_run_start(plan=plan, actor=request.user, source=Source.ADMIN)
            except FleetError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, "Dry run started: this page shows it as it goes.")
            return HttpResponseRedirect(here)
        latest = selectors.latest_dry_run(plan)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Dry run of {plan.name}",
            "opts": self.model._meta,
            "original": plan,
            "dry_run": latest,
            "running": latest is not None and latest.state == DryRunState.RUNNING,
            "result": latest.result if latest is not None and latest.state == DryRunState.SUCCEEDED else None,
            "run_url": (
                reverse("admin:workflows_workflowrun_change", args=[latest.run_id])
                if latest is not None and latest.run_id
                else ""
            ),
            "can_dry_run": request.user.has_perm("rollouts.add_dryrun"),
            "can_start": request.user.has_perm("rollouts.start_rollout"),
            "start_url": reverse("admin:rollouts_rolloutplan_start", args=[plan.pk]),
        }
        return TemplateResponse(request, "admin/rollouts/rolloutplan/dry_run.html", context)

    def start_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Confirmation page with a reason, then rollouts.services.rollout_start."""
        plan = get_object_or_404(RolloutPlan.objects.select_related("low_risk_by"), pk=pk)
        if not request.user.has_perm("rollouts.start_rollout"):
            raise PermissionDenied
        form = ReasonForm(request.POST if request.method == "POST" else None, required=True)
        if request.method == "POST" and form.is_valid():
            try:
                rollout = services.rollout_start(
                    plan=plan, actor=request.user, source=Source.ADMIN, reason=form.cleaned_data["reason"]
                )
            except FleetError as exc:
                self.message_user(request, exc.message, messages.ERROR)
                return HttpResponseRedirect(reverse("admin:rollouts_rolloutplan_dry_run", args=[plan.pk]))
            self.message_user(request, f"Started rollout {rollout.pk} of {plan.name}.")
            return HttpResponseRedirect(reverse("admin:rollouts_rollout_change", args=[rollout.pk]))
        gates = approvals.gates_at_start(plan)
        note = (
            "Every wave, the first included, waits for an approval by someone who did not start it, edit the plan "
            "or write the release (approval policy)."
            if gates["approve_first_wave"]
            else ("Waves after the first wait for an approval." if gates["require_approval"] else "")
        )
        return _confirm_page(self, request, plan, "start", f"Start a rollout of plan {plan.name}", form, note)


# --- rollouts ---------------------------------------------------------------------------------------

ACTIONS: dict[str, tuple[Any, str, str]] = {
    # name: (service, permission, what the confirmation page says)
    "pause": (services.rollout_pause, "rollouts.change_rollout", "No more sites start; sites in flight finish."),
    "resume": (services.rollout_resume, "rollouts.change_rollout", "Sites start again where the rollout stopped."),
    "cancel": (
        services.rollout_cancel,
        "rollouts.change_rollout",
        "Stops for good: sites not started are skipped; sites that got the release keep it.",
    ),
    "approve": (services.rollout_approve, "rollouts.approve_rollout", "The next wave opens."),
    "rollback": (
        services.rollout_rollback,
        "rollouts.change_rollout",
        "Every site that got the release is put back at its previous revision.",
    ),
}


def _available_actions(rollout: Rollout) -> list[str]:
    allowed = ROLLOUT_TRANSITIONS[rollout.state]
    available = []
    if RolloutState.PAUSED in allowed:
        available.append("pause")
    if rollout.state == RolloutState.PAUSED:
        available.append("resume")
    if rollout.state == RolloutState.AWAITING_APPROVAL:
        available.append("approve")
    if RolloutState.CANCELLED in allowed:
        available.append("cancel")
    if rollout.state in ROLLOUT_ROLLBACK_STATES and rollout.rollback_requested_at is None:
        available.append("rollback")
    return available


def _confirm_page(
    model_admin: admin.ModelAdmin, request: HttpRequest, obj: Any, action: str, title: str, form: Any, note: str = ""
) -> HttpResponse:
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": model_admin.model._meta,
        "original": obj,
        "action": action,
        "note": note,
        "form": form,
    }
    return TemplateResponse(request, "admin/rollouts/confirm_action.html", context)


class WaveInline(ReadOnlyInline):
    model = RolloutWave
    fields = readonly_fields = (
        "index",
        "name",
        "size",
        "state",
        "progress",
        "skipped",
        "opened_at",
        "closed_at",
        "bake_until",
        "approved_by",
    )
    extra = 0
    can_delete = False
    ordering = ["index"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[RolloutWave]:
        return super().get_queryset(request).select_related("approved_by")

    @admin.display(description="progress")
    def progress(self, wave: RolloutWave) -> str:
        return progress_bar(wave.counts, wave.size)

    @admin.display(description="skipped, why")
    def skipped(self, wave: RolloutWave) -> str:
        return skipped_summary(wave)


@admin.register(Rollout)
class RolloutAdmin(admin.ModelAdmin):
    list_display = ["id", "plan", "release", "state_badge", "current_wave", "progress", "started_by_name", "started_at"]
    list_filter = ["state", "release__application", "plan"]
    search_fields = ["plan__name", "release__version", "started_by_name"]
    list_select_related = ["plan", "release__application"]
    inlines = [WaveInline]
    list_per_page = 50
    show_full_result_count = False
    fields = readonly_fields = (
        "plan",
        "release",
        "state_badge",
        "current_wave",
        "progress",
        "counts_by_state",
        "skipped_by_reason",
        "failing_sites",
        "sites_link",
        "gates",
        "started_by_name",
        "started_at",
        "approved_by",
        "finished_at",
        "halted_reason",
        "rollback_requested_at",
        "rollback_requested_by",
        "rollback_reason",
        "plan_snapshot",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rollouts start from a plan

    def has_delete_permission(self, request: HttpRequest, obj: Rollout | None = None) -> bool:
        return False  # a rollout is history: it ends, it is never removed

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<int:pk>/action/<str:action>/",
                self.admin_site.admin_view(self.action_view),
                name="rollouts_rollout_action",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        rollout = self.get_object(request, object_id)
        buttons = []
        if rollout is not None:
            for name in _available_actions(rollout):
                if request.user.has_perm(ACTIONS[name][1]):
                    buttons.append((name, reverse("admin:rollouts_rollout_action", args=[rollout.pk, name])))
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "action_buttons": buttons})

    def action_view(self, request: HttpRequest, pk: int, action: str) -> HttpResponse:
        """Confirmation page with a reason, then the service; refusals show as messages."""
        if action not in ACTIONS:
            raise PermissionDenied
        service, permission, note = ACTIONS[action]
        rollout = get_object_or_404(Rollout.objects.select_related("plan"), pk=pk)
        if not request.user.has_perm(permission):
            raise PermissionDenied
        form = ReasonForm(request.POST or None, required=action in REASON_REQUIRED)
        if request.method == "POST" and form.is_valid():
            try:
                service(rollout=rollout, actor=request.user, source=Source.ADMIN, reason=form.cleaned_data["reason"])
            except FleetError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, f"Rollout {rollout.pk}: {action} done.")
            return HttpResponseRedirect(reverse("admin:rollouts_rollout_change", args=[rollout.pk]))
        return _confirm_page(
            self,
            request,
            rollout,
            action,
            f"{action.capitalize()} rollout {rollout.pk} ({rollout.plan.name})",
            form,
            note,
        )

    @admin.display(description="state", ordering="state")
    def state_badge(self, rollout: Rollout) -> str:
        return badge(rollout.state)

    @admin.display(description="progress")
    def progress(self, rollout: Rollout) -> str:
        return progress_bar(rollout.counts, rollout.total)

    @admin.display(description="sites by state")
    def counts_by_state(self, rollout: Rollout) -> str:
        return counts_summary(rollout.counts)

    @admin.display(description="skipped sites (do not count as failed)")
    def skipped_by_reason(self, rollout: Rollout) -> str:
        if not rollout.n_skipped:
            return "-"
        url = reverse("admin:rollouts_siterollout_changelist")
        link = f"{url}?rollout__id__exact={rollout.pk}&state__exact=skipped"
        return format_html('{} (<a href="{}">list them</a>)', skipped_summary(rollout), link)

    @admin.display(description="how sites and waves are judged")
    def gates(self, rollout: Rollout) -> str:
        gates = describe_gates(rollout.plan_snapshot)
        return format_html(
            "{}; healthy for {} s to succeed; no result after {} s: failed if reached, skipped if not; {}; {}",
            gates["progress_deadline_text"],
            gates["min_success_seconds"],
            gates["site_deadline_seconds"],
            gates["failure_threshold_text"],
            "a wave of only skipped sites passes"
            if gates["allow_unreachable_waves"]
            else "a wave of only skipped sites halts",
        )

    @admin.display(description="failing sites (count against the threshold)")
    def failing_sites(self, rollout: Rollout) -> str:
        if not rollout.n_failed:
            return "-"
        rows = (
            SiteRollout.objects.filter(rollout=rollout, state=SiteRolloutState.FAILED)
            .select_related("site", "wave")
            .order_by("finished_at")[:50]
        )
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            ((row.site.code, row.wave.name, row.error[:300] or "-") for row in rows),
        )
        more = format_html("<p>and {} more</p>", rollout.n_failed - 50) if rollout.n_failed > 50 else ""
        return format_html("<table><tr><th>site</th><th>wave</th><th>why</th></tr>{}</table>{}", body, more)

    @admin.display(description="sites")
    def sites_link(self, rollout: Rollout) -> str:
        url = reverse("admin:rollouts_siterollout_changelist") + f"?rollout__id__exact={rollout.pk}"
        return format_html('<a href="{}">all {} sites</a> (filter by state and wave)', url, rollout.total)


@admin.register(SiteRollout)
class SiteRolloutAdmin(ReadOnlyAdmin):
    list_display = [
        "site",
        "rollout",
        "wave_index",
        "state_badge",
        "revision",
        "short_error",
        "started_at",
        "finished_at",
    ]
    list_filter = ["state", "skip_reason", "wave__index", "site__region", "rollout"]
    search_fields = ["site__code", "error", "revision"]
    list_select_related = ["site", "rollout__plan", "wave"]
    readonly_fields = [
        "rollout",
        "wave",
        "site",
        "position",
        "state",
        "skip_reason",
        "previous_revision",
        "revision",
        "error",
        "started_at",
        "finished_at",
        "workflow_run",
    ]
    list_per_page = 100
    show_full_result_count = False

    @admin.display(description="wave", ordering="wave__index")
    def wave_index(self, row: SiteRollout) -> str:
        return f"{row.wave.index} ({row.wave.name})"

    @admin.display(description="state", ordering="state")
    def state_badge(self, row: SiteRollout) -> str:
        if row.state == SiteRolloutState.SKIPPED and row.skip_reason:
            return format_html("{} <small>{}</small>", badge(row.state), row.get_skip_reason_display().lower())
        return badge(row.state)

    @admin.display(description="error")
    def short_error(self, row: SiteRollout) -> str:
        return row.error[:120]


@admin.register(SiteSyncState)
class SiteSyncStateAdmin(ReadOnlyAdmin):
    """The drift check's answer per site: filter on drifted to find sites not running their repository."""

    list_display = [
        "site",
        "state_badge",
        "head_revision",
        "applied_revision",
        "checked_at",
        "drifted_since",
        "message",
    ]
    list_filter = ["state", "site__region", "checked_at"]
    search_fields = ["site__code", "head_revision", "applied_revision"]
    list_select_related = ["site"]
    readonly_fields = ["site", "state", "head_revision", "applied_revision", "message", "checked_at", "drifted_since"]
    list_per_page = 100
    show_full_result_count = False

    @admin.display(description="state", ordering="state")
    def state_badge(self, row: SiteSyncState) -> str:
        return badge(row.state)
