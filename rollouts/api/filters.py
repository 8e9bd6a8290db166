"""Filters on the release, plan, rollout and per-site lists."""

import django_filters

from fleet.api.filters import FleetFilterSet, IntegerFilter
from rollouts.choices import DriftState, RolloutState, SiteRolloutState, SkipReason
from rollouts.models import Application, Release, Rollout, RolloutPlan, SiteRollout, SiteSyncState


class ApplicationFilter(FleetFilterSet):
    class Meta:
        model = Application
        fields = ["team", "namespace", "stateful"]


class ReleaseFilter(FleetFilterSet):
    locked = django_filters.BooleanFilter(field_name="locked_at", lookup_expr="isnull", exclude=True)

    class Meta:
        model = Release
        fields = ["application", "version", "locked"]


class RolloutPlanFilter(FleetFilterSet):
    application = IntegerFilter(field_name="release__application")

    class Meta:
        model = RolloutPlan
        fields = ["release", "application"]


class RolloutFilter(FleetFilterSet):
    state = django_filters.MultipleChoiceFilter(choices=RolloutState.choices)
    application = IntegerFilter(field_name="release__application")
    started_after = django_filters.IsoDateTimeFilter(field_name="started_at", lookup_expr="gte")
    started_before = django_filters.IsoDateTimeFilter(field_name="started_at", lookup_expr="lt")

    class Meta:
        model = Rollout
        fields = ["state", "plan", "release", "application", "started_after", "started_before"]


class SiteRolloutFilter(FleetFilterSet):
    state = django_filters.MultipleChoiceFilter(choices=SiteRolloutState.choices)
    skip_reason = django_filters.MultipleChoiceFilter(choices=SkipReason.choices)
    wave = IntegerFilter(field_name="wave__index")
    site = django_filters.CharFilter(field_name="site__code")
    region = django_filters.CharFilter(field_name="site__region")

    class Meta:
        model = SiteRollout
        fields = ["state", "skip_reason", "wave", "site", "region"]


class DriftFilter(FleetFilterSet):
    state = django_filters.MultipleChoiceFilter(choices=DriftState.choices)
    site = django_filters.CharFilter(field_name="site__code")
    region = django_filters.CharFilter(field_name="site__region")
    checked_before = django_filters.IsoDateTimeFilter(field_name="checked_at", lookup_expr="lt")

    class Meta:
        model = SiteSyncState
        fields = ["state", "site", "region", "checked_before"]
