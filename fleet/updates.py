"""`model_update`: the one way a service changes a row's descriptive fields (and `model_delete`, the one
way it deletes a row).

Every `<noun>_update` service wraps it with its model's editable fields (declared once, next to the
service, and used by the API serializer and the admin form too) and its own rules as callbacks. It
locks the row, applies the changes, validates, diffs, saves only what changed and audits the diff, all
in one transaction; a change that changes nothing writes nothing, so an import may repeat itself.
"""

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, TypeVar

from django.db import models, transaction

from fleet.audit.choices import Source
from fleet.audit.services import Actor, audit_record, changes_between, field_values
from fleet.errors import Invalid
from fleet.transitions import auto_now_fields
from fleet.validation import full_clean_or_invalid

M = TypeVar("M", bound=models.Model)
Diff = dict[str, list[Any]]


def model_update(
    obj: M,
    *,
    changes: Mapping[str, Any],
    fields: Collection[str],
    kind: str,
    actor: Actor,
    source: Source,
    values: Callable[[M], dict[str, Any]] | None = None,
    check: Callable[[M], None] | None = None,
    validate: Callable[[M, set[str]], None] | None = None,
    on_change: Callable[[M, Diff], Iterable[str]] | None = None,
    after: Callable[[M, Diff], None] | None = None,
    payload: Callable[[Diff], dict[str, Any]] | None = None,
) -> M:
    """Apply `changes` (only names in `fields`: Invalid naming the others) to `obj`; returns the row.

    On the row locked (select_for_update), in this order: `check(row)` may refuse it as it is stored;
    the changes are set; `validate(row, changed)` refuses bad values (default: the model's validators,
    Invalid naming the field); the diff of `values(row)` (default: the `fields`, as field_values gives
    them) decides: nothing changed, nothing is written. Otherwise `on_change(row, diff)` applies the rules
    that depend on what changed (may raise, may add to the diff, names other fields it set), the changed
    fields are saved, the audit row `update` records `payload(diff)` (default `{"changes": diff}`) and
    `after(row, diff)` does what the change implies elsewhere.
    """
    unknown = set(changes) - set(fields)
    if unknown:
        raise Invalid(f"these {kind} fields cannot be changed here: {', '.join(sorted(unknown))}")
    snapshot = values or (lambda row: field_values(row, tuple(fields)))
    with transaction.atomic():
        locked = type(obj)._default_manager.select_for_update().get(pk=obj.pk)
        if check is not None:
            check(locked)
        before = snapshot(locked)
        for name, value in changes.items():
            setattr(locked, name, value)
        changed = set(changes_between(before, snapshot(locked)))
        if validate is not None:
            validate(locked, changed)
        else:
            full_clean_or_invalid(locked)
        diff = changes_between(before, snapshot(locked))  # after validation, which may have converted values
        if not diff:
            return locked
        extra = list(on_change(locked, diff)) if on_change is not None else []
        locked.save(update_fields=sorted({*diff, *extra, *auto_now_fields(locked)}))
        audit_record(
            actor=actor,
            verb="update",
            obj=locked,
            source=source,
            payload=payload(diff) if payload else {"changes": diff},
        )
        if after is not None:
            after(locked, diff)
    return locked


def model_delete(
    obj: M,
    *,
    actor: Actor,
    source: Source,
    payload: Callable[[M], dict[str, Any]],
    check: Callable[[M], None] | None = None,
) -> None:
    """Delete `obj`, in one transaction on the row locked (select_for_update): `check(row)` may refuse it
    (a Conflict saying why it stays), the audit row `delete` records `payload(row)`, and the row goes.
    Every `<noun>_delete` service wraps it with its own rule as `check`."""
    with transaction.atomic():
        locked = type(obj)._default_manager.select_for_update().get(pk=obj.pk)
        if check is not None:
            check(locked)
        audit_record(actor=actor, verb="delete", obj=locked, source=source, payload=payload(locked))
        locked.delete()
