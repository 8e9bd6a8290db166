"""State machines: the one way a row changes state (sites, nodes, rollouts, site rollouts).

Each machine is a dictionary from a state to the states it may become, next to its choices, described
once by a `StateMachine`. `state_transition` is the service every app's transition wraps: lock the row,
check the table, set the state and its time, save those fields, audit the move, so every refusal reads
the same way and every move leaves the same audit row. An app's own rules come in as callbacks: `check`
(a person may do less than the table allows), `record` (the other fields a move sets), `after` (what a
move changes elsewhere, in the same transaction).
"""

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from django.db import models, transaction
from django.utils import timezone

from fleet.audit.choices import Source
from fleet.audit.services import Actor, audit_record
from fleet.errors import Conflict, Invalid

M = TypeVar("M", bound=models.Model)


def require_state(to: str, *, states: Collection[str], kind: str) -> None:
    """Invalid (400) when `to` is not a state of this machine at all."""
    if to not in states:
        raise Invalid(f"{to!r} is not a {kind} state", field="state")


def require_move(table: Mapping[str, Collection[str]], *, current: str, to: str, subject: str) -> None:
    """Conflict (409) naming the current state when the table does not allow `current -> to`.
    Staying in the same state is the caller's decision (usually a no-op)."""
    if to != current and to not in table[current]:
        raise Conflict(f"{subject} is {current}; it cannot become {to}", field="state")


@dataclass(frozen=True)
class StateMachine(Generic[M]):
    """One model's machine: its table and states, how a refusal names a row ("site TX-0412"), and the
    field stamped with the time of each move (None when the model keeps none)."""

    table: Mapping[str, Collection[str]]
    states: Collection[str]
    kind: str
    subject: Callable[[M], str]
    changed_at: str | None = None


def lock_for_move(obj: M, *, to: str, machine: StateMachine[M]) -> M:
    """The row locked (select_for_update) once `to` is known to be a state the table allows from its
    current one (or that one): Invalid or Conflict naming the state otherwise. Call in a transaction."""
    require_state(to, states=machine.states, kind=machine.kind)
    locked = type(obj)._default_manager.select_for_update().get(pk=obj.pk)
    require_move(machine.table, current=locked.state, to=to, subject=machine.subject(locked))  # type: ignore[attr-defined]
    return locked


def state_transition(
    obj: M,
    *,
    to: str,
    machine: StateMachine[M],
    actor: Actor,
    source: Source,
    reason: str = "",
    check: Callable[[M], None] | None = None,
    record: Callable[[M, dt.datetime], Iterable[str]] | None = None,
    after: Callable[[M, str], None] | None = None,
) -> M:
    """Move `obj` to `to` if the machine's table allows it, audited as `transition` {from, to, reason};
    returns the row as saved. Moving to the current state is a no-op (a retried step may call it again).

    In the transaction, on the locked row: `check(row)` may refuse (raise) after the table allowed the
    move; `record(row, now)` sets the move's other fields and names them; `after(row, before)` runs
    after the audit row, for what the move changes elsewhere. Fields with `auto_now` are saved too.
    """
    with transaction.atomic():
        locked = lock_for_move(obj, to=to, machine=machine)
        before: str = locked.state  # type: ignore[attr-defined]
        if before == to:
            return locked
        if check is not None:
            check(locked)
        now = timezone.now()
        locked.state = to  # type: ignore[attr-defined]
        fields = ["state"]
        if machine.changed_at:
            setattr(locked, machine.changed_at, now)
            fields.append(machine.changed_at)
        if record is not None:
            fields.extend(record(locked, now))
        locked.save(update_fields=[*fields, *auto_now_fields(locked)])
        audit_record(
            actor=actor,
            verb="transition",
            obj=locked,
            source=source,
            payload={"from": before, "to": to, "reason": reason},
        )
        if after is not None:
            after(locked, before)
    return locked


def auto_now_fields(obj: models.Model) -> list[str]:
    """The fields Django stamps on every save (`updated_at`): a save with update_fields names them."""
    return [f.name for f in obj._meta.concrete_fields if getattr(f, "auto_now", False)]
