"""Health in the admin: the badge shown on site and node lists (with the state beside it, the columns both
lists share), and the alerts list (read-only: the
system opens and resolves alerts; a node-down alert links to the node's Replace confirmation page)."""

import datetime as dt

from django.contrib import admin
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from fleet.admin_display import badge, when
from fleet.admin_filters import IndexedValuesFilter
from fleet.admin_readonly import ReadOnlyAdmin
from sites.admin.filters import NullFilter
from sites.choices import AlertKind, NodeHealth, SiteHealth
from sites.messages import clock
from sites.models import Alert, Node, Site

HEALTH_LABELS = {str(value): str(label) for value, label in [*SiteHealth.choices, *NodeHealth.choices]}


def health_badge(health: str, since: dt.datetime | None, reason: str = "") -> SafeString:
    """`degraded since 14:02`, the reason on hover."""
    when = f" since {clock(since, timezone.now())}" if since else ""
    # A site offline by plan is not an alarm: grey, where a site state `offline` is red.
    label = HEALTH_LABELS.get(health, health)
    pill = badge("unknown", label) if health == SiteHealth.OFFLINE else badge(health, label)
    return format_html('<span title="{}">{}{}</span>', reason, pill, when)


class StateAndHealthColumns:
    """The state and health columns of the site and node lists, mixed into their ModelAdmins."""

    @admin.display(description="state", ordering="state")
    def state_badge(self, obj: Site | Node) -> str:
        return badge(obj.state, obj.get_state_display())

    @admin.display(description="health", ordering="health")
    def health_column(self, obj: Site | Node) -> str:
        return health_badge(obj.health, obj.health_since, obj.health_reason)


class OpenFilter(NullFilter):
    title = "open"
    parameter_name = "open"
    field = "resolved_at"
    labels = ("open", "resolved")
    empty_means = "yes"


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
