"""`validated()`: a request body checked by an input serializer, for every view that writes."""

from collections.abc import Mapping
from typing import Any

from rest_framework import exceptions, serializers


def validated(serializer_class: type[serializers.Serializer], data: Any, *, partial: bool = False) -> dict[str, Any]:
    """The serializer's validated data as a dict, or a 400 naming each bad field (DRF's ValidationError).

    A body that is not an object (a JSON list, a string) is a 400 saying so: input serializers take
    named fields, and DRF's own answer to it names no field.
    """
    if not isinstance(data, Mapping):
        raise exceptions.ParseError("the request body must be a JSON object")
    serializer = serializer_class(data=data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
