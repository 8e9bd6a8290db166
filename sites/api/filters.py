"""Filters a support person or integration needs on the site and node lists."""

import django_filters
from django.db.models import QuerySet

from fleet.api.filters import FleetFilterSet
from sites.choices import NodeHealth, SiteHealth
from sites.labels import LabelSelector
from sites.models import Node, Site


class SiteFilter(FleetFilterSet):
    labels = django_filters.CharFilter(method="filter_labels", help_text="label selector, e.g. tier=pilot,!legacy")
    heartbeat_before = django_filters.IsoDateTimeFilter(field_name="last_heartbeat_at", lookup_expr="lt")
    heartbeat_after = django_filters.IsoDateTimeFilter(field_name="last_heartbeat_at", lookup_expr="gte")
    reachability = django_filters.CharFilter(field_name="cluster__reachability")
    health = django_filters.MultipleChoiceFilter(
        choices=SiteHealth.choices, help_text="one or more: ?health=degraded&health=unreachable"
    )
    health_since_before = django_filters.IsoDateTimeFilter(field_name="health_since", lookup_expr="lt")
    health_since_after = django_filters.IsoDateTimeFilter(field_name="health_since", lookup_expr="gte")

    class Meta:
        model = Site
        fields = [
            "state",
            "region",
            "timezone",
            "labels",
            "reachability",
            "heartbeat_before",
            "heartbeat_after",
            "health",
            "health_since_before",
            "health_since_after",
        ]

    def filter_labels(self, queryset: QuerySet[Site], name: str, value: str) -> QuerySet[Site]:
        return LabelSelector.parse(value).filter(queryset)


class NodeFilter(FleetFilterSet):
    site = django_filters.CharFilter(field_name="site__code")
    region = django_filters.CharFilter(field_name="site__region")
    seen_before = django_filters.IsoDateTimeFilter(field_name="last_seen_at", lookup_expr="lt")
    seen_after = django_filters.IsoDateTimeFilter(field_name="last_seen_at", lookup_expr="gte")
    never_seen = django_filters.BooleanFilter(field_name="last_seen_at", lookup_expr="isnull")
    health = django_filters.MultipleChoiceFilter(
        choices=NodeHealth.choices, help_text="one or more: ?health=not_ready&health=not_seen"
    )
    health_since_before = django_filters.IsoDateTimeFilter(field_name="health_since", lookup_expr="lt")
    health_since_after = django_filters.IsoDateTimeFilter(field_name="health_since", lookup_expr="gte")

    class Meta:
        model = Node
        fields = [
            "state",
            "role",
            "site",
            "region",
            "hardware_model",
            "seen_before",
            "seen_after",
            "never_seen",
            "health",
            "health_since_before",
            "health_since_after",
        ]
