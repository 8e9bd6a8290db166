"""Checks shared by every state machine (sites, nodes, rollouts, site rollouts).

Each machine is a dictionary from a state to the states it may become, next to its choices; the
services lock the row, then call these so that every refusal reads the same way.
"""

from collections.abc import Collection, Mapping

from fleet.errors import Conflict, Invalid


def require_state(to: str, *, states: Collection[str], kind: str) -> None:
    """Invalid (400) when `to` is not a state of this machine at all."""
    if to not in states:
        raise Invalid(f"{to!r} is not a {kind} state", field="state")


def require_move(table: Mapping[str, Collection[str]], *, current: str, to: str, subject: str) -> None:
    """Conflict (409) naming the current state when the table does not allow `current -> to`.
    Staying in the same state is the caller's decision (usually a no-op)."""
    if to != current and to not in table[current]:
        raise Conflict(f"{subject} is {current}; it cannot become {to}", field="state")
