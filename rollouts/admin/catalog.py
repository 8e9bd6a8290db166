"""Admin pages of the catalog: applications, releases (read-only once locked) and rollout plans, with a
plan's dry-run page and the confirmation that starts a rollout. Every save goes through rollouts.services
(fleet.admin_forms), so the admin validates, audits and refuses exactly as the API does."""

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from fleet.admin_display import badge
from fleet.admin_forms import ServiceAdminMixin, ServiceForm
from fleet.audit.choices import Source
from fleet.errors import FleetError
from rollouts import approvals, dry_runs, selectors, services
from rollouts.admin.display import ReasonForm, call_service, confirm_page
from rollouts.choices import DryRunState
from rollouts.models import Application, Release, RolloutPlan

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
            call_service(
                self, request, dry_runs.dry_run_start, "Dry run started: this page shows it as it goes.", plan=plan
            )
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
        return confirm_page(self, request, plan, "start", f"Start a rollout of plan {plan.name}", form, note)
