"""Services for the machines' side of the control plane: bootstrap tokens and node credentials
(registration is sites.registration, heartbeats sites.heartbeats). The device API (sites/api/device.py)
and the admin are thin doors into these.

Secrets are random (256 bits), shown once, and stored as their sha256: a table dump gives nobody a
usable token, and a lookup by hash needs no slow password hash because the secrets are not guessable.
"""

import datetime as dt
import secrets
from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.utils import timezone

from fleet.audit.choices import Source
from fleet.audit.services import Actor, audit_record
from fleet.errors import Conflict, Forbidden, Invalid
from sites.choices import NodeState, SiteState
from sites.crypto import hash_secret
from sites.models import BootstrapToken, Node, NodeCredential, Site

BOOTSTRAP_TOKEN_PREFIX = "efb_"  # noqa: S105  # a label, not a secret
NODE_TOKEN_PREFIX = "efn_"  # noqa: S105  # a label, not a secret
DISPLAY_PREFIX_LENGTH = 12  # "efb_" + 8 random characters: enough to tell tokens apart, useless to an attacker
DEFAULT_BOOTSTRAP_LIFETIME = dt.timedelta(days=7)
MIN_BOOTSTRAP_LIFETIME = dt.timedelta(hours=1)
# A token on a boot medium in a box in transit is a credential lying around: keep its life bounded.
MAX_BOOTSTRAP_LIFETIME = dt.timedelta(days=30)
# A token names the machines it is for; a site gets two or three, so this bounds a typo, not a use.
MAX_SERIALS_PER_TOKEN = 50
ANY_SERIAL_PERMISSION = "sites.issue_any_serial_bootstraptoken"
# States from which a machine may register: new, re-imaged after a wipe, or retrying a lost answer.
REGISTRABLE_STATES = frozenset({NodeState.PREREGISTERED, NodeState.WIPED, NodeState.JOINING})


def _new_secret(kind_prefix: str) -> tuple[str, str, str]:
    """(plaintext, display prefix, hash) of a fresh random secret."""
    plaintext = kind_prefix + secrets.token_urlsafe(32)
    return plaintext, plaintext[:DISPLAY_PREFIX_LENGTH], hash_secret(plaintext)


def device_actor(serial: str) -> str:
    """The audit actor of a machine's own requests."""
    return f"device:{serial}"[:150]


# --- bootstrap tokens ----------------------------------------------------------------------------------


def bootstrap_token_issue(
    *,
    site: Site,
    actor: Actor,
    source: Source,
    lifetime: dt.timedelta | None = None,
    note: str = "",
    serials: Sequence[str] | None = None,
    any_serial: bool = False,
) -> tuple[BootstrapToken, str]:
    """Issue a single-use registration token for `site`. Returns the row and the plaintext, which is
    stored nowhere: the caller shows it once.

    The token is bound to machines: the `serials` named (each a machine of this site), or by default the
    site's machines waiting to register (pre-registered, wiped, or joining). `any_serial` makes it a
    site-wide token instead, which people need `sites.issue_any_serial_bootstraptoken` for. Raises Invalid
    for a lifetime out of range or serials that are not machines of the site, Forbidden without the
    permission, Conflict for a decommissioned site.
    """
    lifetime = DEFAULT_BOOTSTRAP_LIFETIME if lifetime is None else lifetime
    if not MIN_BOOTSTRAP_LIFETIME <= lifetime <= MAX_BOOTSTRAP_LIFETIME:
        raise Invalid(
            f"a bootstrap token lives between {_hours(MIN_BOOTSTRAP_LIFETIME)} and {_hours(MAX_BOOTSTRAP_LIFETIME)} "
            f"hours, not {lifetime.total_seconds() / 3600:g}",
            field="lifetime",
        )
    if site.state == SiteState.DECOMMISSIONED:
        raise Conflict(f"site {site.code} is decommissioned; it takes no new machines", field="site")
    if any_serial:
        if serials:
            raise Invalid("name serials or ask for any_serial, not both", field="serials")
        _require_perm(actor, ANY_SERIAL_PERMISSION, field="any_serial")
        bound: list[str] = []
    else:
        bound = _bound_serials(site, serials)
    plaintext, prefix, digest = _new_secret(BOOTSTRAP_TOKEN_PREFIX)
    with transaction.atomic():
        token = BootstrapToken.objects.create(
            site=site,
            prefix=prefix,
            token_hash=digest,
            note=note[:200],
            created_by=_user(actor),
            expires_at=timezone.now() + lifetime,
            serials=bound,
            any_serial=any_serial,
        )
        audit_record(
            actor=actor,
            verb="issue_bootstrap_token",
            obj=site,
            source=source,
            payload={
                "token": prefix,
                "expires_at": token.expires_at.isoformat(),
                "note": token.note,
                "serials": bound,
                "any_serial": any_serial,
            },
        )
    return token, plaintext


def _bound_serials(site: Site, serials: Sequence[str] | None) -> list[str]:
    """The serials a token is for: those named, each a live machine of `site`; by default the machines of
    `site` waiting to register. Raises Invalid (field `serials`) naming the first problem."""
    if serials is None:
        waiting = list(
            Node.objects.filter(site=site, state__in=REGISTRABLE_STATES)
            .order_by("serial")
            .values_list("serial", flat=True)
        )
        if not waiting:
            raise Invalid(
                f"site {site.code} has no machine waiting to register: pre-register it first (POST nodes/) "
                "and issue the token for its serial, or ask for a site-wide token (any_serial)",
                field="serials",
            )
        if len(waiting) > MAX_SERIALS_PER_TOKEN:
            raise Invalid(
                f"site {site.code} has {len(waiting)} machines waiting to register; name at most "
                f"{MAX_SERIALS_PER_TOKEN} serials per token",
                field="serials",
            )
        return waiting
    wanted = list(dict.fromkeys(str(serial).strip() for serial in serials))
    if not wanted or "" in wanted:
        raise Invalid("name at least one serial, none of them blank", field="serials")
    if len(wanted) > MAX_SERIALS_PER_TOKEN:
        raise Invalid(f"at most {MAX_SERIALS_PER_TOKEN} serials per token, not {len(wanted)}", field="serials")
    found = {node.serial: node for node in Node.objects.filter(serial__in=wanted).select_related("site")}
    for serial in wanted:
        node = found.get(serial)
        if node is None or node.site_id != site.pk:
            raise Invalid(
                f"{serial} is not a machine of site {site.code}; pre-register it there first (POST nodes/)",
                field="serials",
            )
        if node.state == NodeState.RETIRED:
            raise Invalid(f"{serial} is retired; it may not register again", field="serials")
    return wanted


def _require_perm(actor: Actor, perm: str, *, field: str) -> None:
    """People need the permission; system actors (workflows, commands: plain strings) act on their own."""
    if isinstance(actor, str):
        return
    has_perm = getattr(actor, "has_perm", None)
    if actor is None or not actor.is_authenticated or has_perm is None or not has_perm(perm):
        raise Forbidden(f"a bootstrap token for any machine of a site needs the {perm} permission", field=field)


def bootstrap_token_revoke(*, token: BootstrapToken, actor: Actor, source: Source) -> BootstrapToken:
    """Make a token unusable. Revoking a revoked token is a no-op; a used token has nothing left to revoke."""
    with transaction.atomic():
        token = BootstrapToken.objects.select_for_update().select_related("site").get(pk=token.pk)
        if token.revoked_at is not None:
            return token
        if token.used_at is not None:
            raise Conflict(f"bootstrap token {token.prefix}… is used; there is nothing left to revoke")
        token.revoked_at = timezone.now()
        token.revoked_by = _user(actor)
        token.save(update_fields=["revoked_at", "revoked_by"])
        audit_record(
            actor=actor, verb="revoke_bootstrap_token", obj=token.site, source=source, payload={"token": token.prefix}
        )
    return token


def _hours(delta: dt.timedelta) -> str:
    return f"{delta.total_seconds() / 3600:g}"


def _user(actor: Actor) -> Any:
    """The user row behind an actor, or None for a system or device actor."""
    return actor if getattr(actor, "is_authenticated", False) and getattr(actor, "pk", None) else None


# --- node credentials ----------------------------------------------------------------------------------


def node_credentials_issue(*, node: Node, actor: Actor, source: Source) -> tuple[NodeCredential, str]:
    """A fresh credential for `node`; any active one is revoked first (one active credential per node)."""
    plaintext, prefix, digest = _new_secret(NODE_TOKEN_PREFIX)
    with transaction.atomic():
        _revoke_active(node, reason="replaced by a new credential")
        credential = NodeCredential.objects.create(node=node, prefix=prefix, token_hash=digest)
        audit_record(actor=actor, verb="issue_credential", obj=node, source=source, payload={"credential": prefix})
    return credential, plaintext


def node_credentials_revoke(*, node: Node, actor: Actor, source: Source, reason: str) -> int:
    """Revoke the node's active credential, so the machine can no longer call the device API (done before a
    wipe or replacement). Returns how many were revoked; 0 (and no audit event) when none was active."""
    with transaction.atomic():
        count = _revoke_active(node, reason=reason)
        if count:
            audit_record(actor=actor, verb="revoke_credentials", obj=node, source=source, payload={"reason": reason})
    return count


def _revoke_active(node: Node, *, reason: str) -> int:
    return NodeCredential.objects.filter(node=node, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoke_reason=reason[:500]
    )
