"""Per-site records of rollouts: each site's place in a rollout (filterable by state, why skipped, wave,
region), with the two actions on ONE site (retry a failed site, skip one with a reason) behind a
confirmation page; and the drift check's answer per site."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from fleet.admin_display import badge
from fleet.admin_filters import IndexedValuesFilter
from fleet.admin_readonly import ReadOnlyAdmin
from rollouts.admin.display import ReasonForm, call_service, confirm_page
from rollouts.choices import SiteRolloutState
from rollouts.models import SiteRollout, SiteSyncState
from rollouts.services.site_actions import SITE_ACTION_PERMISSION, site_rollout_retry, site_rollout_skip

SITE_ACTIONS = {
    "retry": (site_rollout_retry, "It goes back to pending in its wave; the rollout starts it again with a new run."),
    "skip": (
        site_rollout_skip,
        "It is skipped (never counted as failed) and its run, if any, is asked to stop. Say why.",
    ),
}


@admin.register(SiteRollout)
class SiteRolloutAdmin(ReadOnlyAdmin):
    list_display = [
        "site_link",
        "rollout",
        "wave_index",
        "state_badge",
        "revision",
        "short_error",
        "started_at",
        "finished_at",
    ]
    list_filter = ["state", "skip_reason", "wave__index", ("site__region", IndexedValuesFilter), "rollout"]
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
        "unreachable_since",
        "workflow_run",
    ]
    list_per_page = 100
    show_full_result_count = False

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/action/<str:action>/", view(self.action_view), name="rollouts_siterollout_action"),
            *super().get_urls(),
        ]

    def action_view(self, request: HttpRequest, pk: int, action: str) -> HttpResponse:
        """Retry or skip one site: a confirmation page with the reason (required to skip), then
        rollouts.services.site_actions; refusals show as messages on the rollout page."""
        if action not in SITE_ACTIONS:
            raise PermissionDenied
        service, note = SITE_ACTIONS[action]
        row = get_object_or_404(SiteRollout.objects.select_related("site", "rollout__plan", "wave"), pk=pk)
        if not request.user.has_perm(SITE_ACTION_PERMISSION):
            raise PermissionDenied
        back = reverse("admin:rollouts_rollout_change", args=[row.rollout_id])
        form = ReasonForm(request.POST or None, required=action == "skip")
        if request.method == "POST" and form.is_valid():
            done = f"Site {row.site.code} in rollout {row.rollout_id}: {action} done."
            call_service(self, request, service, done, site_rollout=row, reason=form.cleaned_data["reason"])
            return HttpResponseRedirect(back)
        title = f"{action.capitalize()} site {row.site.code} in rollout {row.rollout_id} ({row.rollout.plan.name})"
        note = f"It is {row.get_state_display().lower()}" + (f": {row.error[:300]}" if row.error else "") + ". " + note
        return confirm_page(self, request, row, action, title, form, note, back_url=back)

    @admin.display(description="site", ordering="site__code")
    def site_link(self, row: SiteRollout) -> str:
        return format_html('<a href="{}">{}</a>', reverse("admin:sites_site_change", args=[row.site_id]), row.site.code)

    @admin.display(description="wave", ordering="wave__index")
    def wave_index(self, row: SiteRollout) -> str:
        return f"{row.wave.index} ({row.wave.name})"

    @admin.display(description="state", ordering="state")
    def state_badge(self, row: SiteRollout) -> str:
        if row.state == SiteRolloutState.SKIPPED and row.skip_reason:
            return format_html(
                "{} <small>{}</small>", badge(row.state, "skipped"), row.get_skip_reason_display().lower()
            )
        return badge(row.state, row.get_state_display())

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
    list_filter = ["state", ("site__region", IndexedValuesFilter), "checked_at"]
    search_fields = ["site__code", "head_revision", "applied_revision"]
    list_select_related = ["site"]
    readonly_fields = ["site", "state", "head_revision", "applied_revision", "message", "checked_at", "drifted_since"]
    list_per_page = 100
    show_full_result_count = False

    @admin.display(description="state", ordering="state")
    def state_badge(self, row: SiteSyncState) -> str:
        return badge(row.state)
