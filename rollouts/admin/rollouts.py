"""The rollout list and the rollout page: a page that lives (its per-wave bars, counts, bake countdown,
approval and failing sites refresh from a fragment URL every few seconds, rollouts/static/rollouts/
rollout_live.js), with the rollout's actions (pause, resume, cancel, approve, roll back) behind a
confirmation page that asks why. Everything it shows comes from rollouts.page in a bounded number of
queries; every action calls rollouts.services, so the admin refuses and audits exactly as the API does.
"""

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from fleet.admin_display import badge, duration
from rollouts import services
from rollouts.admin.display import ReasonForm, call_service, confirm_page, progress_bar, skipped_summary
from rollouts.choices import ROLLOUT_ROLLBACK_STATES, ROLLOUT_TRANSITIONS, RolloutState
from rollouts.models import Rollout
from rollouts.page import rollout_page

# Seconds between two refreshes of the page's live part.
LIVE_REFRESH_SECONDS = 3

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
# Actions whose reason is required (rollouts.services refuses them without one from a person).
REASON_REQUIRED = frozenset({"cancel", "rollback"})


def available_actions(rollout: Rollout) -> list[str]:
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


@admin.register(Rollout)
class RolloutAdmin(admin.ModelAdmin):
    list_display = ["id", "plan", "release", "state_badge", "current_wave", "progress", "started_by_name", "started_at"]
    list_filter = ["state", "release__application", "plan"]
    search_fields = ["plan__name", "release__version", "started_by_name"]
    list_select_related = ["plan", "release__application"]
    list_per_page = 50
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rollouts start from a plan

    def has_change_permission(self, request: HttpRequest, obj: Rollout | None = None) -> bool:
        return False  # the record changes through the actions and the workflow only

    def has_delete_permission(self, request: HttpRequest, obj: Rollout | None = None) -> bool:
        return False  # a rollout is history: it ends, it is never removed

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/action/<str:action>/", view(self.action_view), name="rollouts_rollout_action"),
            path("<int:pk>/live/", view(self.live_view), name="rollouts_rollout_live"),
            *super().get_urls(),
        ]

    # --- the page --------------------------------------------------------------------------------------

    def _context(self, request: HttpRequest, pk: int) -> dict[str, Any]:
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            page = rollout_page(pk, timezone.now())
        except Rollout.DoesNotExist:
            raise Http404(f"no rollout {pk}") from None
        rollout = page.rollout
        buttons = [
            (name, reverse("admin:rollouts_rollout_action", args=[rollout.pk, name]))
            for name in available_actions(rollout)
            if request.user.has_perm(ACTIONS[name][1])
        ]
        return {
            "page": page,
            "rollout": rollout,
            "state_badge": badge(rollout.state, rollout.get_state_display()),
            "action_buttons": buttons,
            "elapsed": duration(page.elapsed),
            "skipped_why": skipped_summary(rollout),
            "left": duration(page.left) if page.left is not None else "",
            "can_act_on_sites": request.user.has_perm("rollouts.change_siterollout"),
            "live_url": reverse("admin:rollouts_rollout_live", args=[rollout.pk]),
            "refresh_seconds": LIVE_REFRESH_SECONDS,
            "sites_url": reverse("admin:rollouts_siterollout_changelist") + f"?rollout__id__exact={rollout.pk}",
        }

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        """The rollout page (not an edit form): see rollouts/templates/admin/rollouts/rollout/page.html."""
        if not object_id.isdigit():
            raise Http404("no such rollout")
        context = {
            **self.admin_site.each_context(request),
            **self._context(request, int(object_id)),
            "opts": self.model._meta,
            "title": "",
        }
        context["title"] = f"Rollout {object_id} of {context['rollout'].plan.name}"
        return TemplateResponse(request, "admin/rollouts/rollout/page.html", context)

    def live_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The page's live part alone: what rollout_live.js swaps in every few seconds."""
        return TemplateResponse(request, "admin/rollouts/rollout/live.html", self._context(request, pk))

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
            done = f"Rollout {rollout.pk}: {action} done."
            call_service(self, request, service, done, rollout=rollout, reason=form.cleaned_data["reason"])
            return HttpResponseRedirect(reverse("admin:rollouts_rollout_change", args=[rollout.pk]))
        title = f"{action.capitalize()} rollout {rollout.pk} ({rollout.plan.name})"
        return confirm_page(self, request, rollout, action, title, form, note)

    # --- the list ----------------------------------------------------------------------------------------

    @admin.display(description="state", ordering="state")
    def state_badge(self, rollout: Rollout) -> str:
        return badge(rollout.state, rollout.get_state_display())

    @admin.display(description="progress")
    def progress(self, rollout: Rollout) -> str:
        return progress_bar(rollout, rollout.total)
