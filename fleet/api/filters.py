"""The base of every FilterSet in the API: query parameters a database can compare, or a 400.

django-filter's NumberFilter parses into a Decimal of any size, so `?application=2914030552443218649035901510097043456`
reached PostgreSQL as a number no bigint column holds (a 500); its datetime filters pass any UTC
offset through, and PostgreSQL refuses offsets beyond ±15:59 (`?seen_after=0446-11-21T14:46:25-18:03`,
a 500). `FleetFilterSet` retypes every number filter on an integer field to a 64-bit integer (and
"0.5" to a 400 rather than a silent 0) and every datetime filter to a UTC datetime, however the
filter was declared, and keeps a multiple-choice filter on the row's own column (`?health=`) from
adding a DISTINCT that made a page cost a sort of every match. `FleetFilterBackend` makes it the base
of the FilterSets DRF builds from a view's `filterset_fields`; views with a `filterset_class` subclass
it (a test walks the router).
"""

import datetime as dt
from typing import Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.constants import LOOKUP_SEP
from django_filters.fields import IsoDateTimeField
from django_filters.rest_framework import DjangoFilterBackend
from django_filters.utils import get_model_field

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class Int64Field(forms.IntegerField):
    """A whole number that fits a bigint column."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", INT64_MIN)
        kwargs.setdefault("max_value", INT64_MAX)
        super().__init__(**kwargs)


class UTCDateTimeField(IsoDateTimeField):
    """An ISO 8601 time, handed on in UTC: the database then never sees the client's offset."""

    def to_python(self, value: Any) -> dt.datetime | None:
        result = super().to_python(value)
        if result is None or result.tzinfo is None:
            return result
        try:
            return result.astimezone(dt.UTC)
        except OverflowError as exc:
            raise ValidationError("the time is out of range", code="invalid") from exc


class IntegerFilter(django_filters.NumberFilter):
    """A NumberFilter on a 64-bit whole number (declare this one rather than NumberFilter)."""

    field_class = Int64Field


class FleetFilterSet(django_filters.FilterSet):
    """Every number filter on an integer field becomes an IntegerFilter's field; every datetime filter
    a UTCDateTimeField. Done once per class, when django-filter collects its filters."""

    @classmethod
    def get_filters(cls) -> Any:
        filters = super().get_filters()
        model = cls._meta.model
        for filter_ in filters.values():
            if isinstance(filter_, django_filters.NumberFilter) and _is_integer(model, filter_.field_name):
                filter_.field_class = Int64Field
            elif issubclass(filter_.field_class, forms.DateTimeField):
                filter_.field_class = UTCDateTimeField
            if isinstance(filter_, django_filters.MultipleChoiceFilter) and LOOKUP_SEP not in filter_.field_name:
                # A column of the row itself: no join can repeat a row, and DISTINCT over the whole row would
                # make the database read and sort every match before it can hand out the page.
                filter_.distinct = False
        return filters


def _is_integer(model: type[models.Model] | None, field_name: str) -> bool:
    """Whether the filter's field is a whole number (an unknown one counts: no filter here is a decimal)."""
    field = get_model_field(model, field_name) if model is not None else None
    if isinstance(field, models.ForeignKey):
        field = field.target_field
    return field is None or isinstance(field, models.IntegerField)


class FleetFilterBackend(DjangoFilterBackend):
    """DRF's django-filter backend, building `filterset_fields` FilterSets on FleetFilterSet."""

    filterset_base = FleetFilterSet
