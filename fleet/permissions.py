"""Permission checks inside services, for the actions whose permission is part of the rule itself.

The API and the admin check permissions at their doors; a service that guards something destructive or
that lifts a safeguard (retiring a machine, decommissioning a site, marking a rollout plan low-risk)
checks again, so a new door cannot forget it. People need the permission; system actors (`None` or a
plain string such as `system:beat` or a workflow run) act on their own authority: they are code, started
by someone who was checked.
"""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from fleet.audit.services import Actor
from fleet.errors import Forbidden


def is_person(actor: Actor) -> bool:
    """Whether the actor is a user (a person or an integration's token; anonymous too), not a component."""
    return isinstance(actor, AbstractBaseUser | AnonymousUser)


def require_perm(actor: Actor, perm: str) -> None:
    """Forbidden (403) naming `perm` unless a person actor has it; system actors pass."""
    if not is_person(actor):
        return
    has_perm = getattr(actor, "has_perm", None)
    if not getattr(actor, "is_authenticated", False) or has_perm is None or not has_perm(perm):
        raise Forbidden(f"you need the {perm} permission")
