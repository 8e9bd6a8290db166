"""Services for the machines' side of the control plane: bootstrap tokens, node credentials,
registration and heartbeat. The device API (sites/api/device.py) and the admin are thin doors into these.

Secrets are random (256 bits), shown once, and stored as their sha256: a table dump gives nobody a
usable token, and a lookup by hash needs no slow password hash because the secrets are not guessable.
"""

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from fleet.audit.services import Actor, audit_record
from fleet.errors import Conflict, FleetError, Forbidden, Invalid
from sites.choices import NODE_TRANSITIONS, BootstrapTokenState, NodeRole, NodeState, SiteState
from sites.crypto import hash_secret
from sites.models import Backup, BootstrapToken, Node, NodeCredential, Site
from sites.services import node_transition
from sites.validators import HOSTNAME_RE, normalize_mac

BOOTSTRAP_TOKEN_PREFIX = "efb_"  # noqa: S105  # a label, not a secret
NODE_TOKEN_PREFIX = "efn_"  # noqa: S105  # a label, not a secret
DISPLAY_PREFIX_LENGTH = 12  # "efb_" + 8 random characters: enough to tell tokens apart, useless to an attacker
DEFAULT_BOOTSTRAP_LIFETIME = dt.timedelta(days=7)
MIN_BOOTSTRAP_LIFETIME = dt.timedelta(hours=1)
# A token on a boot medium in a box in transit is a credential lying around: keep its life bounded.
MAX_BOOTSTRAP_LIFETIME = dt.timedelta(days=30)
MAX_BACKUPS_PER_HEARTBEAT = 100
# States from which a machine may register: new, re-imaged after a wipe, or retrying a lost answer.
REGISTRABLE_STATES = frozenset({NodeState.PREREGISTERED, NodeState.WIPED, NodeState.JOINING})


def join_deadline() -> dt.timedelta:
    """How long a registered machine has to become a Ready node (FLEET_JOIN_DEADLINE_SECONDS, 30 min)."""
    return dt.timedelta(seconds=getattr(settings, "FLEET_JOIN_DEADLINE_SECONDS", 30 * 60))


def _new_secret(kind_prefix: str) -> tuple[str, str, str]:
    """(plaintext, display prefix, hash) of a fresh random secret."""
    plaintext = kind_prefix + secrets.token_urlsafe(32)
    return plaintext, plaintext[:DISPLAY_PREFIX_LENGTH], hash_secret(plaintext)


def device_actor(serial: str) -> str:
    """The audit actor of a machine's own requests."""
    return f"device:{serial}"[:150]


# --- bootstrap tokens ----------------------------------------------------------------------------------


def bootstrap_token_issue(
    *, site: Site, actor: Actor, source: str, lifetime: dt.timedelta | None = None, note: str = ""
) -> tuple[BootstrapToken, str]:
    """Issue a single-use registration token for `site`. Returns the row and the plaintext, which is
    stored nowhere: the caller shows it once. Raises Invalid for a lifetime out of range."""
    lifetime = DEFAULT_BOOTSTRAP_LIFETIME if lifetime is None else lifetime
    if not MIN_BOOTSTRAP_LIFETIME <= lifetime <= MAX_BOOTSTRAP_LIFETIME:
        raise Invalid(
            f"a bootstrap token lives between {_hours(MIN_BOOTSTRAP_LIFETIME)} and {_hours(MAX_BOOTSTRAP_LIFETIME)} "
            f"hours, not {lifetime.total_seconds() / 3600:g}",
            field="lifetime",
        )
    if site.state == SiteState.DECOMMISSIONED:
        raise Conflict(f"site {site.code} is decommissioned; it takes no new machines", field="site")
    plaintext, prefix, digest = _new_secret(BOOTSTRAP_TOKEN_PREFIX)
    with transaction.atomic():
        token = BootstrapToken.objects.create(
            site=site,
            prefix=prefix,
            token_hash=digest,
            note=note[:200],
            created_by=_user(actor),
            expires_at=timezone.now() + lifetime,
        )
        audit_record(
            actor=actor,
            verb="issue_bootstrap_token",
            obj=site,
            source=source,
            payload={"token": prefix, "expires_at": token.expires_at.isoformat(), "note": token.note},
        )
    return token, plaintext


def bootstrap_token_revoke(*, token: BootstrapToken, actor: Actor, source: str) -> BootstrapToken:
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


def node_credentials_issue(*, node: Node, actor: Actor, source: str) -> tuple[NodeCredential, str]:
    """A fresh credential for `node`; any active one is revoked first (one active credential per node)."""
    plaintext, prefix, digest = _new_secret(NODE_TOKEN_PREFIX)
    with transaction.atomic():
        _revoke_active(node, reason="replaced by a new credential")
        credential = NodeCredential.objects.create(node=node, prefix=prefix, token_hash=digest)
        audit_record(actor=actor, verb="issue_credential", obj=node, source=source, payload={"credential": prefix})
    return credential, plaintext


def node_credentials_revoke(*, node: Node, actor: Actor, source: str, reason: str) -> int:
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


# --- registration --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    """What a machine learns when it registers: who it is, its credential, and the cluster to join."""

    node: Node
    node_token: str
    server_url: str
    join_token: str

    @property
    def node_labels(self) -> dict[str, str]:
        return {"edgefleet.io/site": self.node.site.code, "edgefleet.io/node-id": str(self.node.pk)}


def device_register(
    *, serial: str, mac: str, bootstrap_token: str, facts: dict[str, Any], now: dt.datetime | None = None
) -> Registration:
    """Register a machine that presents a site's bootstrap token (zero-touch provisioning).

    Success moves the node to `joining` (with a deadline), stores its facts, uses up the token and issues
    a new node credential. A refusal raises Forbidden (403) or Conflict (409) and changes nothing, except
    that a machine that should not be there is quarantined (and audited): that record is the point of it.
    """
    serial = serial.strip()
    try:
        mac = normalize_mac(mac)
    except ValidationError as exc:
        raise Invalid(exc.messages[0], field="mac") from exc
    now = now or timezone.now()
    with transaction.atomic():
        # A refusal is returned, not raised, so that a quarantine written on the way is committed.
        outcome = _register(serial=serial, mac=mac, presented=bootstrap_token, facts=facts, now=now)
    if isinstance(outcome, FleetError):
        raise outcome
    return outcome


def _register(
    *, serial: str, mac: str, presented: str, facts: dict[str, Any], now: dt.datetime
) -> Registration | FleetError:
    token = (
        BootstrapToken.objects.select_for_update(of=("self",))
        .select_related("site__cluster")
        .filter(token_hash=hash_secret(presented))
        .first()
    )
    if token is None:
        return Forbidden("the bootstrap token is not valid", field="bootstrap_token")
    refusal = _token_refusal(token, now)
    if refusal is not None:
        return refusal
    site = token.site
    actor = device_actor(serial)
    node = Node.objects.select_for_update(of=("self",)).select_related("site").filter(serial=serial).first()
    if node is None:
        _quarantine_unknown(site=site, serial=serial, mac=mac, facts=facts, token=token, now=now)
        return Forbidden(
            f"serial {serial} is not registered at site {site.code}; the machine is quarantined until staff accept it",
            field="serial",
        )
    if node.state == NodeState.RETIRED:
        return Forbidden(f"machine {serial} is retired; it may not register again", field="serial")
    if node.site_id != site.pk:
        return _quarantine(
            node,
            actor=actor,
            reason=f"checked in with a bootstrap token of site {site.code}, but it belongs to site {node.site.code}",
        )
    if node.mac and node.mac != mac:
        return _quarantine(
            node, actor=actor, reason=f"checked in with MAC {mac}, but MAC {node.mac} is registered for {serial}"
        )
    if node.state == NodeState.QUARANTINED:
        return Forbidden(f"machine {serial} is quarantined ({node.state_reason}); staff must accept it first")
    if node.state not in REGISTRABLE_STATES:
        return Conflict(
            f"machine {serial} is {node.state}; only a pre-registered, wiped or joining machine can register",
            field="state",
        )
    if not site.cluster.has_join_config:
        return Conflict(f"site {site.code} has no K3s join configuration yet; try again later")
    if not node.mac and Node.objects.exclude(pk=node.pk).exclude(state=NodeState.RETIRED).filter(mac=mac).exists():
        return _quarantine(node, actor=actor, reason=f"checked in with MAC {mac}, which another machine in service has")
    return _admit(node=node, mac=mac, token=token, facts=facts, actor=actor, now=now)


def _token_refusal(token: BootstrapToken, now: dt.datetime) -> FleetError | None:
    state = token.state_at(now)
    if state == BootstrapTokenState.REVOKED:
        return Forbidden(f"bootstrap token {token.prefix}… was revoked; ask for a new one", field="bootstrap_token")
    if state == BootstrapTokenState.USED:
        return Forbidden(
            f"bootstrap token {token.prefix}… was already used at {token.used_at:%Y-%m-%d %H:%M} UTC; "
            "a token registers one machine once",
            field="bootstrap_token",
        )
    if state == BootstrapTokenState.EXPIRED:
        return Forbidden(
            f"bootstrap token {token.prefix}… expired at {token.expires_at:%Y-%m-%d %H:%M} UTC; ask for a new one",
            field="bootstrap_token",
        )
    if token.site.state == SiteState.DECOMMISSIONED:
        return Forbidden(f"site {token.site.code} is decommissioned", field="bootstrap_token")
    return None


def _admit(
    *, node: Node, mac: str, token: BootstrapToken, facts: dict[str, Any], actor: str, now: dt.datetime
) -> Registration:
    retry = node.state == NodeState.JOINING  # its first answer was lost: same outcome, new credential
    if not retry:
        node = node_transition(
            node=node,
            to=NodeState.JOINING,
            actor=actor,
            source="device",
            reason=f"registered with bootstrap token {token.prefix}…",
            deadline=now + join_deadline(),
        )
    model = str(facts.get("model") or "")[:100]
    Node.objects.filter(pk=node.pk).update(
        facts=facts,
        last_seen_at=now,
        hardware_model=node.hardware_model or model,
        mac=node.mac or mac,  # a replacement pre-registered without its MAC learns it now
        updated_at=now,
    )
    node.refresh_from_db()
    token.used_at, token.used_by = now, node
    token.save(update_fields=["used_at", "used_by"])
    _credential, plaintext = node_credentials_issue(node=node, actor=actor, source="device")
    audit_record(
        actor=actor,
        verb="register",
        obj=node,
        source="device",
        payload={"site": token.site.code, "bootstrap_token": token.prefix, "retry": retry},
    )
    cluster = token.site.cluster
    return Registration(
        node=node, node_token=plaintext, server_url=cluster.join_server_url, join_token=cluster.join_token()
    )


def _quarantine(node: Node, *, actor: str, reason: str) -> FleetError:
    """Quarantine a known machine whose check-in does not match its record; its credential goes too."""
    if NodeState.QUARANTINED in NODE_TRANSITIONS[node.state] or node.state == NodeState.QUARANTINED:
        node_transition(node=node, to=NodeState.QUARANTINED, actor=actor, source="device", reason=reason)
        _revoke_active(node, reason="quarantined: " + reason)
        return Forbidden(f"machine {node.serial} {reason}; it is quarantined until staff accept it")
    # A machine in service cannot be quarantined by a check-in (the table forbids it): refuse and leave a trace.
    audit_record(actor=actor, verb="register_refused", obj=node, source="device", payload={"reason": reason})
    return Forbidden(f"machine {node.serial} {reason}; registration refused")


def _quarantine_unknown(
    *, site: Site, serial: str, mac: str, facts: dict[str, Any], token: BootstrapToken, now: dt.datetime
) -> Node:
    """Record a machine nobody pre-registered, at the token's site, so staff can see and accept it."""
    reason = f"unknown serial checked in with bootstrap token {token.prefix}…"
    node = Node.objects.create(
        serial=serial,
        site=site,
        hostname=_free_hostname(site, serial, facts),
        mac=mac,
        role=NodeRole.AGENT,
        hardware_model=str(facts.get("model") or "")[:100],
        state=NodeState.QUARANTINED,
        state_changed_at=now,
        state_reason=reason,
        facts=facts,
        last_seen_at=now,
    )
    audit_record(
        actor=device_actor(serial),
        verb="quarantine",
        obj=node,
        source="device",
        payload={"serial": serial, "mac": mac, "site": site.code, "reason": reason},
    )
    return node


def _free_hostname(site: Site, serial: str, facts: dict[str, Any]) -> str:
    """The machine's own hostname if it is valid and free at the site, else one derived from the serial."""
    reported = str(facts.get("hostname") or "").lower()
    slug = re.sub(r"[^a-z0-9-]+", "-", serial.lower()).strip("-")[:40] or "machine"
    live = Node.objects.filter(site=site).exclude(state=NodeState.RETIRED)
    for candidate in (reported, f"unknown-{slug}", f"unknown-{slug}-{hash_secret(serial)[:6]}"):
        if candidate and HOSTNAME_RE.match(candidate) and not live.filter(hostname=candidate).exists():
            return candidate
    return f"unknown-{secrets.token_hex(4)}"


# --- heartbeat -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupReport:
    """One backup as the edge reports it in a heartbeat."""

    application: str
    namespace: str
    taken_at: dt.datetime
    location: str
    size: int
    restore_image: str = ""


def device_heartbeat(
    *,
    credential: NodeCredential,
    versions: dict[str, str] | None,
    backups: list[BackupReport],
    now: dt.datetime | None = None,
) -> Node:
    """Record that a machine is alive, its software versions and the backups its site holds.

    Called ~300 times a second at fleet scale, so it is a fixed handful of UPDATEs and one upsert,
    whatever the number of backups, and not audited (it is an observation, not a change).
    """
    if len(backups) > MAX_BACKUPS_PER_HEARTBEAT:
        raise Invalid(f"at most {MAX_BACKUPS_PER_HEARTBEAT} backups per heartbeat", field="backups")
    now = now or timezone.now()
    node = credential.node
    node_fields: dict[str, Any] = {"last_seen_at": now}
    if versions is not None:
        node_fields["versions"] = versions
    # Last report wins for a repeated (application, location) in one body; PostgreSQL refuses to upsert
    # the same row twice in one statement.
    unique = {(b.application, b.location): b for b in backups}
    with transaction.atomic():
        NodeCredential.objects.filter(pk=credential.pk).update(last_used_at=now)
        Node.objects.filter(pk=node.pk).update(**node_fields)
        Site.objects.filter(pk=node.site_id).update(last_heartbeat_at=now)
        if unique:
            Backup.objects.bulk_create(
                [
                    Backup(site_id=node.site_id, reported_by=node, reported_at=now, **vars(report))
                    for report in unique.values()
                ],
                update_conflicts=True,
                unique_fields=["site", "application", "location"],
                update_fields=["namespace", "taken_at", "size", "restore_image", "reported_by", "reported_at"],
            )
    for key, value in node_fields.items():
        setattr(node, key, value)
    return node
