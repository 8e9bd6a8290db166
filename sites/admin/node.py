"""The node list and the node page: health and role, the lifecycle buttons (sites/admin/node_actions.py),
and a live fragment of the node's state that the page refreshes without a reload."""

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from fleet.admin_display import when
from fleet.admin_filters import IndexedValuesFilter
from fleet.admin_forms import ServiceAdminMixin, StateServiceForm
from fleet.audit.choices import Source
from fleet.workflows import active_run, runs_of
from sites import services
from sites.admin.devices import NodeCredentialInline
from sites.admin.filters import LastSeenFilter, NodeDownFilter
from sites.admin.health import StateAndHealthColumns
from sites.admin.node_actions import NodeLifecycleAdminMixin
from sites.choices import NODE_MANUAL_TRANSITIONS
from sites.models import Node


class NodeForm(StateServiceForm):
    def state_help(self) -> str:
        allowed = sorted(NODE_MANUAL_TRANSITIONS.get(self.instance.state, frozenset()))
        return (
            f"from {self.instance.state} you may set: {', '.join(allowed) or 'nothing'}; "
            "wipe, replace, provision and retire are the buttons above (and actions of the node list)"
        )

    class Meta:
        model = Node
        fields = ["serial", "site", *services.NODE_FIELDS, "state"]

    def apply(self, actor: Any) -> Node:
        data = {f: self.cleaned_data[f] for f in services.NODE_FIELDS}
        if self.instance.pk is None:
            return services.node_create(
                actor=actor,
                source=Source.ADMIN,
                serial=self.cleaned_data["serial"],
                site=self.cleaned_data["site"],
                **data,
            )
        return self.update_then_set_state(
            actor,
            subject="node",
            update=services.node_update,
            set_state=services.node_set_state,
            site=self.cleaned_data["site"],
            **data,
        )


@admin.register(Node)
class NodeAdmin(NodeLifecycleAdminMixin, StateAndHealthColumns, ServiceAdminMixin, admin.ModelAdmin):
    form = NodeForm
    list_display = [
        "hostname", "serial", "site_link", "role", "state_badge", "health_column", "mac", "hardware_model",
        "last_seen",
    ]  # fmt: skip
    list_filter = [
        NodeDownFilter, "health", "state", "role", ("site__region", IndexedValuesFilter), LastSeenFilter,
        ("hardware_model", IndexedValuesFilter),
    ]  # fmt: skip
    search_fields = ["serial", "hostname", "mac", "site__code"]
    list_select_related = ["site"]
    autocomplete_fields = ["site"]
    list_per_page = 100
    show_full_result_count = False
    inlines = [NodeCredentialInline]
    actions = ["revoke_credentials", "provision_nodes", "wipe_node", "replace_node", "retire_node"]

    def get_urls(self) -> list[URLPattern]:
        live = path("<int:node_id>/live/", self.admin_site.admin_view(self.live_view), name="sites_node_live")
        return [live, *super().get_urls()]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        node = Node.objects.select_related("site").filter(pk=object_id).first() if object_id.isdigit() else None
        extra = dict(extra_context or {})
        if node is not None:
            extra["node_buttons"] = self.node_buttons(request, node)
            extra["live_url"] = reverse("admin:sites_node_live", args=[node.pk])
        return super().change_view(request, object_id, form_url, extra)

    def live_view(self, request: HttpRequest, node_id: int) -> HttpResponse:
        """The node's state, health and running workflow: the fragment its page polls."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        node = get_object_or_404(Node.objects.select_related("site"), pk=node_id)
        context = {"node": node, "run": active_run(node), "latest_run": runs_of(node).first()}
        return TemplateResponse(request, "admin/sites/node/live.html", context)

    def get_readonly_fields(self, request: HttpRequest, obj: Node | None = None) -> Any:
        fixed = [
            "state_changed_at", "state_deadline", "state_reason", "last_seen_at", "facts", "versions", "workflow_runs",
            "health", "health_since", "health_reason", "last_heartbeat_at",
        ]  # fmt: skip
        return ["serial", *fixed] if obj else fixed

    def get_fields(self, request: HttpRequest, obj: Node | None = None) -> Any:
        fields = ["serial", "site", *services.NODE_FIELDS]
        if obj is None:
            return fields
        return [
            *fields,
            "state",
            "reason",
            "state_changed_at",
            "state_deadline",
            "state_reason",
            "workflow_runs",
            "last_seen_at",
            "last_heartbeat_at",
            "health",
            "health_since",
            "health_reason",
            "facts",
            "versions",
        ]

    @admin.display(description="site", ordering="site__code")
    def site_link(self, node: Node) -> str:
        url = reverse("admin:sites_site_change", args=[node.site_id])
        return format_html('<a href="{}">{}</a>', url, node.site.code)

    def has_delete_permission(self, request: HttpRequest, obj: Node | None = None) -> bool:
        return False  # machines are retired, not deleted

    @admin.display(description="last seen", ordering="last_seen_at")
    def last_seen(self, node: Node) -> str:
        return when(node.last_seen_at, node.site.timezone)

    @admin.display(description="workflow runs")
    def workflow_runs(self, node: Node) -> str:
        url = reverse("admin:workflows_workflowrun_changelist")
        count = runs_of(node).count()
        return format_html('<a href="{}?subject_type=sites.node&amp;subject_id={}">{} run(s)</a>', url, node.pk, count)
