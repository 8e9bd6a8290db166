"""The site list and the site page. The page is a 360° view of the restaurant (fleet.console.overview,
templates/admin/sites/site/overview.html) with its buttons (Probe, Onboard, Decommission, and per node
Provision, Wipe, Replace, Revoke credentials, Retire); the edit form is `?edit=1`, a secondary action."""

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from fleet.admin_display import badge, raw_detail, when
from fleet.admin_filters import IndexedValuesFilter
from fleet.admin_forms import ServiceAdminMixin, StateServiceForm
from fleet.audit.choices import Source
from fleet.console.overview import site_overview
from fleet.workflows import active_run
from sites import devices, services
from sites.admin.devices import issue_bootstrap_tokens, issue_site_wide_bootstrap_tokens
from sites.admin.filters import DriftFilter, HeartbeatFilter, LabelFilter
from sites.admin.health import StateAndHealthColumns
from sites.admin.lifecycle import SiteLifecycleAdminMixin
from sites.admin.node_actions import node_buttons_for_site
from sites.admin.versions import K3sVersionFilter, k3s_version_cell
from sites.choices import SiteState
from sites.models import Node, Site
from sites.selectors import site_list

LIVE_SECONDS = 5


class SiteForm(StateServiceForm):
    def state_help(self) -> str:
        return "decommissioning is the Decommission button above (reason, code to confirm)"

    class Meta:
        model = Site
        fields = ["code", *services.SITE_FIELDS, "state"]

    def apply(self, actor: Any) -> Site:
        data = {f: self.cleaned_data[f] for f in services.SITE_FIELDS if f in self.cleaned_data}
        if self.instance.pk is None:
            return services.site_create(
                actor=actor,
                source=Source.ADMIN,
                code=self.cleaned_data["code"],
                state=self.cleaned_data["state"],
                **data,
            )
        return self.update_then_set_state(
            actor, subject="site", update=services.site_update, set_state=services.site_set_state, **data
        )


@admin.register(Site)
class SiteAdmin(SiteLifecycleAdminMixin, StateAndHealthColumns, ServiceAdminMixin, admin.ModelAdmin):
    form = SiteForm
    list_display = [
        "code",
        "name",
        "region",
        "timezone",
        "state_badge",
        "health_column",
        "health_reason",
        "cluster_badge",
        "k3s_version",
        "nodes_summary",
        "last_heartbeat",
    ]
    list_filter = [
        "health", "state", ("region", IndexedValuesFilter), "cluster__reachability", K3sVersionFilter, DriftFilter,
        LabelFilter, HeartbeatFilter, ("timezone", IndexedValuesFilter),
    ]  # fmt: skip
    search_fields = ["code", "name", "region"]
    actions = ["probe_clusters", issue_bootstrap_tokens, issue_site_wide_bootstrap_tokens, "decommission_site"]
    list_per_page = 100
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Site]:
        return site_list()

    def get_readonly_fields(self, request: HttpRequest, obj: Site | None = None) -> Any:
        health = ["health", "health_since", "health_reason", "repo_head_revision", "drifted_since", "sync_error"]
        return ["code", "last_heartbeat_at", "last_applied_revision", *health, "rollout_error"] if obj else []

    # --- the 360° page ------------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        own = [
            path("<int:object_id>/live/", self.admin_site.admin_view(self.live_view), name="sites_site_live"),
            path("<int:object_id>/probe/", self.admin_site.admin_view(self.probe_view), name="sites_site_probe"),
        ]
        return own + super().get_urls()

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.method == "GET" and "edit" not in request.GET and object_id.isdigit():
            return self.overview_view(request, int(object_id))
        return super().change_view(request, object_id, form_url, extra_context)

    def _overview_context(self, request: HttpRequest, object_id: int) -> dict[str, Any]:
        if not self.has_view_permission(request):
            raise PermissionDenied
        site = get_object_or_404(Site.objects.select_related("cluster"), pk=object_id)
        overview = site_overview(site)
        live = site.state != SiteState.DECOMMISSIONED
        node_admin: Any = self.admin_site._registry[Node]
        buttons = node_buttons_for_site(request, node_admin, overview.nodes)
        return {
            "o": overview,
            "site": site,
            "cluster": getattr(site, "cluster", None),
            "node_rows": [(node, buttons[node.pk]) for node in overview.nodes],
            "can_replace": node_admin.has_wipe_node_permission(request),
            "can_probe": live and self.has_probe_permission(request),
            "can_onboard": live and self.has_onboard_site_permission(request),
            "can_decommission": live and self.has_decommission_site_permission(request),
            "can_edit": self.has_change_permission(request, site),
            "site_run": active_run(site),
            "opts": self.opts,
            "live_seconds": LIVE_SECONDS,
        }

    def overview_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        context = self._overview_context(request, object_id)
        site = context["site"]
        context.update(self.admin_site.each_context(request), title=f"{site.code} {site.name}", original=site)
        return TemplateResponse(request, "admin/sites/site/overview.html", context)

    def live_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """The page's body alone, for the page to swap in every few seconds."""
        return TemplateResponse(
            request, "admin/sites/site/overview_body.html", self._overview_context(request, object_id)
        )

    def probe_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """The page's Probe button (POST): the same door as the list's action."""
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:sites_site_change", args=[object_id]))
        if not self.has_probe_permission(request):
            raise PermissionDenied
        site = get_object_or_404(Site, pk=object_id)
        self.probe_clusters(request, Site.objects.filter(pk=site.pk))
        return HttpResponseRedirect(reverse("admin:sites_site_change", args=[site.pk]))

    # --- list columns -------------------------------------------------------------------------------

    @admin.display(description="cluster", ordering="cluster__reachability")
    def cluster_badge(self, site: Site) -> str:
        cluster = site.cluster
        return raw_detail(badge(cluster.reachability, cluster.get_reachability_display()), cluster.last_error_detail)

    @admin.display(description="K3s", ordering="cluster__k3s_version")
    def k3s_version(self, site: Site) -> str:
        return k3s_version_cell(site)

    @admin.display(description="nodes (active/all)")
    def nodes_summary(self, site: Any) -> str:
        return f"{site.active_node_count}/{site.node_count}"

    @admin.display(description="last heartbeat", ordering="last_heartbeat_at")
    def last_heartbeat(self, site: Site) -> str:
        return when(site.last_heartbeat_at, site.timezone)

    @admin.action(description="Probe clusters (version and reachability)", permissions=["probe"])
    def probe_clusters(self, request: HttpRequest, queryset: QuerySet[Site]) -> None:
        count = services.site_probe_request(
            sites=list(queryset.exclude(state=SiteState.DECOMMISSIONED)), actor=request.user, source=Source.ADMIN
        )
        self.message_user(request, f"Queued a probe of {count} site(s); results appear in a few seconds.")

    def has_probe_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("sites.probe_site"))

    def has_issue_bootstrap_token_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("sites.add_bootstraptoken"))

    def has_issue_any_serial_bootstrap_token_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perms(["sites.add_bootstraptoken", devices.ANY_SERIAL_PERMISSION]))

    def has_delete_permission(self, request: HttpRequest, obj: Site | None = None) -> bool:
        return False  # sites are decommissioned, not deleted; see services.site_delete for the API door
