"""The API's router: a detail route with an integer key matches digits only.

DRF's default lookup pattern matches anything between slashes, so `/rollouts/null,null/sites/`
reached the view and a 500 ("Field 'id' expected a number"); a key longer than a bigint reached the
database. With a pattern of at most 18 digits (every id fits a bigint), such a path matches no route
and is a plain 404 (JSON under /api/: fleet.api.exceptions.not_found). A viewset that sets its own
`lookup_value_regex` (sites by code) keeps it.
"""

from typing import Any

from django.db import models
from rest_framework.routers import DefaultRouter

INTEGER_LOOKUP = "[0-9]{1,18}"


class FleetRouter(DefaultRouter):
    def get_lookup_regex(self, viewset: Any, lookup_prefix: str = "") -> str:
        if getattr(viewset, "lookup_value_regex", None) is None and _integer_lookup(viewset):
            lookup_field = getattr(viewset, "lookup_field", "pk")
            lookup_url_kwarg = getattr(viewset, "lookup_url_kwarg", None) or lookup_field
            return f"(?P<{lookup_prefix}{lookup_url_kwarg}>{INTEGER_LOOKUP})"
        return str(super().get_lookup_regex(viewset, lookup_prefix))


def _integer_lookup(viewset: Any) -> bool:
    """Whether the viewset looks its objects up by an integer field (the model's id, usually)."""
    queryset = getattr(viewset, "queryset", None)
    model = queryset.model if queryset is not None else None
    if model is None:
        model = getattr(getattr(getattr(viewset, "serializer_class", None), "Meta", None), "model", None)
    if model is None:
        return False
    lookup_field = getattr(viewset, "lookup_field", "pk")
    field = model._meta.pk if lookup_field == "pk" else model._meta.get_field(lookup_field)
    return isinstance(field, models.IntegerField)
