"""Filters on the workflow run list."""

import django_filters

from fleet.api.filters import FleetFilterSet
from fleet.workflows.choices import RunState
from fleet.workflows.models import WorkflowRun


class WorkflowRunFilter(FleetFilterSet):
    state = django_filters.MultipleChoiceFilter(choices=RunState.choices)
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = WorkflowRun
        fields = ["kind", "state", "subject_type", "subject_id", "exclusive_key", "created_after", "created_before"]
