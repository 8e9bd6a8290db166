"""Turning Django model validation into the domain's Invalid error."""

from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import models

from fleet.errors import Invalid


def full_clean_or_invalid(instance: models.Model, *, exclude: Iterable[str] | None = None) -> None:
    """Run the model's validators; raise Invalid naming the first field and its problem.

    Also refuses None in a JSON field that is not nullable: Django skips validating an empty value of a
    `blank=True` field, and None (the JSON `null` a form field decodes) then fails at the first `in` or
    at the NOT NULL constraint.
    """
    excluded = set(exclude or ())
    for field in instance._meta.concrete_fields:
        if isinstance(field, models.JSONField) and not field.null and field.name not in excluded:
            if getattr(instance, field.attname) is None:
                raise Invalid(f"{field.name}: may not be null", field=field.name)
    try:
        instance.full_clean(exclude=list(exclude) if exclude else None, validate_unique=False)
    except ValidationError as exc:
        raise invalid_from(exc) from exc


def invalid_from(exc: ValidationError) -> Invalid:
    if hasattr(exc, "error_dict"):
        errors = {field: [str(m) for m in msgs] for field, msgs in exc.message_dict.items()}
        field, messages = next(iter(errors.items()))
        return Invalid(f"{field}: {messages[0]}", errors=errors)
    return Invalid("; ".join(exc.messages))
