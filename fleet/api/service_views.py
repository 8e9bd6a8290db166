"""`ServiceModelViewSet`: a model's resource whose writes are its app's services.

Reads are DRF's (the queryset, `serializer_class`, filters, pagination); POST, PUT/PATCH and DELETE read
the body through `validated(write_serializer_class)` and call the services `writes` names, with the
requesting user as actor and `Source.API`, so each resource does not write the same three methods again.
The schema documents `write_serializer_class` as the request of create and update (FleetAutoSchema).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import models, transaction
from rest_framework import serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from fleet.api.inputs import validated
from fleet.audit.choices import Source


@dataclass(frozen=True)
class Writes:
    """A resource's services: `create(actor, source, **data)`, and `update` / `delete`, which take the
    object as the keyword `subject` (`application=`, `plan=`). With `set_state` (a person's change of
    state: `to`, `reason`), PUT/PATCH take `state` and `reason` too: the fields change first, then the
    state, in one transaction, so a refused move leaves the fields unchanged too."""

    subject: str
    create: Callable[..., models.Model]
    update: Callable[..., models.Model]
    delete: Callable[..., None]
    set_state: Callable[..., models.Model] | None = None


class ServiceModelViewSet(viewsets.ModelViewSet):
    write_serializer_class: type[serializers.Serializer]
    writes: Writes

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = validated(self.write_serializer_class, request.data)
        if self.writes.set_state is not None:
            data.pop("reason", None)  # the reason goes with a change of state
        obj = self.writes.create(actor=request.user, source=Source.API, **data)
        return Response(self.present(obj), status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        obj = self.get_object()
        data = validated(self.write_serializer_class, request.data, partial=kwargs.get("partial", False))
        set_state, state, reason = self.writes.set_state, None, ""
        if set_state is not None:
            state, reason = data.pop("state", None), data.pop("reason", "")
        changes = self.update_changes(obj, data)
        subject, actor = self.writes.subject, request.user
        with transaction.atomic():
            if changes or state is None:
                obj = self.writes.update(**{subject: obj}, actor=actor, source=Source.API, **changes)
            if set_state is not None and state is not None:
                obj = set_state(**{subject: obj}, to=state, actor=actor, source=Source.API, reason=reason)
        return Response(self.present(obj))

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.writes.delete(**{self.writes.subject: self.get_object()}, actor=request.user, source=Source.API)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def present(self, obj: Any) -> Any:
        """The body answering a write: the object in `serializer_class`."""
        return self.get_serializer_class()(obj).data

    def update_changes(self, obj: Any, data: dict[str, Any]) -> dict[str, Any]:
        """The changes to give the update service (override to refuse what only the resource knows)."""
        return data
