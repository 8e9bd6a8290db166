"""Who acts on rollouts: the user behind an actor, the permission a person needs, the reason a person
gives. System actors (beat, the rollout workflow: plain strings) act on their own authority and give
their own reasons."""

from django.contrib.auth.models import AbstractBaseUser

from fleet.audit.services import Actor
from fleet.errors import Forbidden, Invalid
from fleet.permissions import is_person


def user_of(actor: Actor) -> AbstractBaseUser | None:
    """The user to record as author, starter or approver (None for a system actor)."""
    return actor if isinstance(actor, AbstractBaseUser) else None


def require_perm(actor: Actor, perm: str) -> None:
    """People need the permission; system actors (beat, workflow: plain strings) act on their own authority."""
    if isinstance(actor, str):
        return
    has_perm = getattr(actor, "has_perm", None)
    if actor is None or not actor.is_authenticated or has_perm is None or not has_perm(perm):
        raise Forbidden(f"you need the {perm} permission")


def require_reason(actor: Actor, reason: str) -> str:
    """People say why they start, cancel or roll back a rollout (Invalid naming `reason`); the system
    components that do it (beat, the workflow's automatic roll back) give their own."""
    reason = (reason or "").strip()
    if not reason and is_person(actor):
        raise Invalid("a reason is required", field="reason")
    return reason
