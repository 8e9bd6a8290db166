"""Writing audit events. Every service that changes state calls `audit_record` in its transaction."""

import datetime as dt
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import models

from fleet.audit.choices import Source
from fleet.audit.models import AuditEvent

Actor = AbstractBaseUser | AnonymousUser | str | None


def actor_name(actor: Actor) -> str:
    """The name an audit row keeps: the username, or `system:<component>` for a non-human actor."""
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    if isinstance(actor, AnonymousUser):
        return "anonymous"
    return actor.get_username()


def audit_record(
    *,
    actor: Actor,
    verb: str,
    obj: models.Model,
    source: Source,
    payload: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event for `obj`. Call it inside the transaction that made the change."""
    user = actor if isinstance(actor, AbstractBaseUser) else None
    return AuditEvent.objects.create(
        actor=user,  # type: ignore[misc]  # any AUTH_USER_MODEL
        actor_repr=actor_name(actor)[:150],
        verb=verb,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        source=source,
        payload=payload or {},
    )


def field_values(obj: models.Model, fields: tuple[str, ...]) -> dict[str, Any]:
    """The named fields of `obj` as an audit payload can hold them: related objects by primary key,
    datetimes as ISO 8601. Take one before and one after a change, and give both to changes_between."""
    values: dict[str, Any] = {}
    for name in fields:
        value = getattr(obj, name)
        if isinstance(value, models.Model):
            value = value.pk
        elif isinstance(value, dt.datetime):
            value = value.isoformat()
        values[name] = value
    return values


def changes_between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """`{field: [old, new]}` for the fields whose value differs, for an update's payload."""
    return {key: [before.get(key), value] for key, value in after.items() if before.get(key) != value}
