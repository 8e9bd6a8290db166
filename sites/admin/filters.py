"""List filters of the site, node and alert pages."""

import datetime as dt
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from sites.choices import NODE_HEALTH_COUNTED_STATES, NodeHealth
from sites.models import Node, Site


class LastSeenFilter(admin.SimpleListFilter):
    """How long ago a site or node was last heard from."""

    title = "last seen"
    parameter_name = "seen"
    field = "last_seen_at"
    options = (("5m", "within 5 minutes"), ("1h", "within an hour"), ("stale", "over an hour ago"), ("never", "never"))

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return self.options

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        value = self.value()
        if value == "5m":
            return queryset.filter(**{f"{self.field}__gte": now - dt.timedelta(minutes=5)})
        if value == "1h":
            return queryset.filter(**{f"{self.field}__gte": now - dt.timedelta(hours=1)})
        if value == "stale":
            return queryset.filter(**{f"{self.field}__lt": now - dt.timedelta(hours=1)})
        if value == "never":
            return queryset.filter(**{f"{self.field}__isnull": True})
        return queryset


class HeartbeatFilter(LastSeenFilter):
    title = "last heartbeat"
    parameter_name = "heartbeat"
    field = "last_heartbeat_at"


class LabelFilter(admin.SimpleListFilter):
    """Filter by one `key=value` label; the choices are the pairs in use (bounded to keep the page fast)."""

    title = "label"
    parameter_name = "label"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        pairs: set[tuple[str, str]] = set()
        for labels in Site.objects.exclude(labels={}).values_list("labels", flat=True)[:2000]:
            pairs.update((k, v) for k, v in labels.items())
        return [(f"{k}={v}", f"{k}={v}") for k, v in sorted(pairs)[:50]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        selected = self.value()
        if not selected or "=" not in selected:
            return queryset
        key, value = selected.split("=", 1)
        prefix = "site__labels" if queryset.model is Node else "labels"
        return queryset.filter(**{f"{prefix}__{key}": value})


class NullFilter(admin.SimpleListFilter):
    """Two choices, `yes` and `no` (labelled by `labels`), on whether `field` is empty: `empty_means` says
    which of the two an empty field is."""

    field = ""
    labels = ("yes", "no")
    empty_means = "no"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return (("yes", self.labels[0]), ("no", self.labels[1]))

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("yes", "no"):
            return queryset.filter(**{f"{self.field}__isnull": self.value() == self.empty_means})
        return queryset


class DriftFilter(NullFilter):
    """Sites whose applied revision differs from their repository head (the drift check's column)."""

    title = "drift"
    parameter_name = "drift"
    field = "drifted_since"
    labels = ("drifted", "in sync")
    empty_means = "no"


class NodeDownFilter(admin.SimpleListFilter):
    """Machines that should be in service and are not ready or not seen: the dashboard's "nodes down"."""

    title = "down"
    parameter_name = "down"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return (("yes", "down (not ready or not seen)"),)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(state__in=NODE_HEALTH_COUNTED_STATES).exclude(health=NodeHealth.READY)
        return queryset
