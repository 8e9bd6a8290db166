"""Health in the admin: the badge shown on site and node lists, and the alerts list (read-only: the
system opens and resolves alerts; a node-down alert links to the node's Replace confirmation page)."""

import datetime as dt
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from fleet.admin_display import badge, when
from fleet.admin_filters import IndexedValuesFilter
from fleet.admin_readonly import ReadOnlyAdmin
from sites.choices import AlertKind, NodeHealth, SiteHealth
from sites.messages import clock
from sites.models import Alert

HEALTH_LABELS = {str(value): str(label) for value, label in [*SiteHealth.choices, *NodeHealth.choices]}


def health_badge(health: str, since: dt.datetime | None, reason: str = "") -> SafeString:
    """`degraded since 14:02`, the reason on hover."""
    when = f" since {clock(since, timezone.now())}" if since else ""
    # A site offline by plan is not an alarm: grey, where a site state `offline` is red.
    label = HEALTH_LABELS.get(health, health)
    pill = badge("unknown", label) if health == SiteHealth.OFFLINE else badge(health, label)
    return format_html('<span title="{}">{}{}</span>', reason, pill, when)


class OpenFilter(admin.SimpleListFilter):
    title = "open"
    parameter_name = "open"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return (("yes", "open"), ("no", "resolved"))

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("yes", "no"):
            return queryset.filter(resolved_at__isnull=self.value() == "yes")
        return queryset


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ["opened", "kind", "site", "node", "message", "state", "resolved", "resolution", "act"]
    list_filter = [OpenFilter, "kind", ("site__region", IndexedValuesFilter), "opened_at"]
    search_fields = ["message", "site__code", "node__hostname", "node__serial"]
    list_select_related = ["site", "node"]
    date_hierarchy = "opened_at"
    list_per_page = 100
    show_full_result_count = False

    @admin.display(description="opened", ordering="opened_at")
    def opened(self, alert: Alert) -> SafeString:
        return when(alert.opened_at, alert.site.timezone)

    @admin.display(description="resolved", ordering="resolved_at")
    def resolved(self, alert: Alert) -> SafeString:
        return when(alert.resolved_at, alert.site.timezone)

    @admin.display(description="state", ordering="resolved_at")
    def state(self, alert: Alert) -> SafeString:
        return badge("failed", "open") if alert.is_open else badge("succeeded", "resolved")

    @admin.display(description="")
    def act(self, alert: Alert) -> str:
        if alert.kind == AlertKind.NODE_DOWN and alert.is_open and alert.node_id:
            url = reverse("admin:sites_node_replace", args=[alert.node_id])
            return format_html('<a class="button" href="{}">Replace…</a>', url)
        return ""
