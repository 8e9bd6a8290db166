"""`alerts/`: what at a site asks a person to act (node down, ...), newest first. Read-only: the system
opens and resolves alerts (sites.alerts); a person acts on what they ask, e.g. `nodes/{id}/replace/`."""

from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers, viewsets

from fleet.api.filters import FleetFilterSet
from fleet.api.pagination import FleetCursorPagination
from sites import selectors
from sites.choices import AlertKind
from sites.models import Alert


class AlertSerializer(serializers.ModelSerializer):
    site: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="code", read_only=True)
    node_hostname = serializers.CharField(source="node.hostname", read_only=True, default=None)
    open = serializers.BooleanField(source="is_open", read_only=True)
    actions = serializers.SerializerMethodField(help_text="what the alert asks, as API paths to POST to")

    class Meta:
        model = Alert
        fields = [
            "id",
            "kind",
            "site",
            "node",
            "node_hostname",
            "message",
            "open",
            "opened_at",
            "resolved_at",
            "resolution",
            "actions",
        ]
        read_only_fields = fields

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "string"}})
    def get_actions(self, alert: Alert) -> dict[str, Any]:
        if alert.kind == AlertKind.NODE_DOWN and alert.node_id and alert.is_open:
            return {"replace": f"/api/v1/nodes/{alert.node_id}/replace/"}
        return {}


class AlertFilter(FleetFilterSet):
    site = django_filters.CharFilter(field_name="site__code")
    open = django_filters.BooleanFilter(method="filter_open", help_text="true: open alerts; false: resolved ones")
    opened_after = django_filters.IsoDateTimeFilter(field_name="opened_at", lookup_expr="gte")
    opened_before = django_filters.IsoDateTimeFilter(field_name="opened_at", lookup_expr="lt")

    class Meta:
        model = Alert
        fields = ["kind", "site", "node", "open", "opened_after", "opened_before"]

    def filter_open(self, queryset: QuerySet[Alert], name: str, value: bool) -> QuerySet[Alert]:
        return queryset.filter(resolved_at__isnull=value)


class AlertPagination(FleetCursorPagination):
    ordering = "-id"


class AlertViewSet(viewsets.ReadOnlyModelViewSet):
    """Alerts, newest first (`?open=true&site=TX-0412`); needs `sites.view_alert`."""

    queryset = selectors.alert_list()
    serializer_class = AlertSerializer
    filterset_class = AlertFilter
    pagination_class = AlertPagination
    search_fields = ["message", "site__code", "node__hostname"]
    ordering_fields: list[str] = []
