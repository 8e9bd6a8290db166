import django_filters
from rest_framework import viewsets

from fleet.api.filters import FleetFilterSet
from fleet.api.pagination import FleetCursorPagination
from fleet.audit.api.serializers import AuditEventSerializer
from fleet.audit.models import AuditEvent


class AuditEventFilter(FleetFilterSet):
    actor = django_filters.CharFilter(field_name="actor_repr")
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["verb", "object_type", "object_id", "source", "actor", "since", "until"]


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The audit log, newest first. Read-only: events are never edited."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    pagination_class = FleetCursorPagination
    search_fields = ["object_repr", "actor_repr"]
    ordering_fields: list[str] = []
