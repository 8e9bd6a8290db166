"""Zero-touch registration: a machine presents a bootstrap token, its serial and its MAC, and gets the
site's K3s join configuration and a node credential (`device/register/`, docs/DEVICES.md).

Machines on restaurant networks are not trusted, and neither serials nor MACs are secret. So a token
registers only the machines it was issued for (sites.devices.bootstrap_token_issue), never changes a
machine of another site (a mismatch there is audited and logged, nothing else), counts every refusal of
the identity presented and revokes itself at FLEET_BOOTSTRAP_MAX_REFUSALS, and quarantines at most
FLEET_BOOTSTRAP_MAX_QUARANTINES machines. What the machine is told names neither another site nor the
registered MAC; the audit event and the log line have the details for staff.
"""

import datetime as dt
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from fleet.audit.choices import Source
from fleet.audit.services import audit_record
from fleet.errors import Conflict, FleetError, Forbidden, Invalid
from sites.choices import NODE_TRANSITIONS, BootstrapTokenState, NodeRole, NodeState, SiteState
from sites.crypto import hash_secret
from sites.devices import REGISTRABLE_STATES, device_actor, node_credentials_issue, node_credentials_revoke
from sites.models import BootstrapToken, Node, Site
from sites.services import node_transition
from sites.validators import HOSTNAME_RE, normalize_mac

logger = logging.getLogger(__name__)


def join_deadline() -> dt.timedelta:
    """How long a registered machine has to become a Ready node (FLEET_JOIN_DEADLINE_SECONDS, 30 min)."""
    return dt.timedelta(seconds=getattr(settings, "FLEET_JOIN_DEADLINE_SECONDS", 30 * 60))


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
    """Register a machine that presents a bootstrap token (zero-touch provisioning).

    Success moves the node to `joining` (with a deadline), stores its facts, uses up the token and issues
    a new node credential. A refusal raises Forbidden (403) or Conflict (409). It never changes a machine
    of another site than the token's; at the token's site, a machine the token was issued for whose
    check-in does not match its record (MAC) is quarantined, and an unknown serial presented with a
    site-wide token is recorded in quarantine. Refusals of the identity presented are counted on the
    token, which is revoked at FLEET_BOOTSTRAP_MAX_REFUSALS; a token puts at most
    FLEET_BOOTSTRAP_MAX_QUARANTINES machines in quarantine. Everything is audited.
    """
    serial = serial.strip()
    try:
        mac = normalize_mac(mac)
    except ValidationError as exc:
        raise Invalid(exc.messages[0], field="mac") from exc
    now = now or timezone.now()
    with transaction.atomic():
        # A refusal is returned, not raised, so that what it records (a quarantine, the token's refusal
        # count, the audit event) is committed.
        outcome = _register(serial=serial, mac=mac, presented=bootstrap_token, facts=facts, now=now)
    if isinstance(outcome, FleetError):
        raise outcome
    return outcome


@dataclass(frozen=True)
class _CheckIn:
    """One registration attempt: who claims to be whom, with which token (locked for the transaction)."""

    token: BootstrapToken
    serial: str
    mac: str
    facts: dict[str, Any]
    now: dt.datetime

    @property
    def actor(self) -> str:
        return device_actor(self.serial)

    @property
    def site(self) -> Site:
        return self.token.site


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
    check_in = _CheckIn(token=token, serial=serial, mac=mac, facts=facts, now=now)
    site = token.site
    if not token.admits_serial(serial):
        return _refuse(
            check_in,
            obj=site,
            reason=f"bootstrap token {token.prefix}… was issued for {', '.join(token.serials)}, not {serial}",
            detail=f"bootstrap token {token.prefix}… was not issued for machine {serial}; registration refused",
            field="serial",
        )
    node = Node.objects.select_for_update(of=("self",)).select_related("site").filter(serial=serial).first()
    if node is None:
        return _quarantine_unknown(check_in)
    if node.site_id != site.pk:
        # The token proves nothing about a machine of another site: record the attempt, never touch it.
        return _refuse(
            check_in,
            obj=node,
            reason=f"checked in with a bootstrap token of site {site.code}, but it belongs to site {node.site.code}",
            detail=f"machine {serial} is not registered at site {site.code}; registration refused",
            field="serial",
        )
    if node.state == NodeState.RETIRED:
        return _refuse(
            check_in,
            obj=node,
            reason="a retired machine checked in",
            detail=f"machine {serial} is retired; it may not register again",
            field="serial",
        )
    if node.state == NodeState.QUARANTINED:
        # Not counted: a quarantined machine retrying while staff decide changes nothing.
        return Forbidden(f"machine {serial} is quarantined; staff must accept it first")
    if node.mac and node.mac != mac:
        return _quarantine(
            node, check_in, reason=f"checked in with MAC {mac}, but MAC {node.mac} is registered for {serial}"
        )
    if node.state not in REGISTRABLE_STATES:
        return Conflict(
            f"machine {serial} is {node.state}; only a pre-registered, wiped or joining machine can register",
            field="state",
        )
    if not site.cluster.has_join_config:
        return Conflict(f"site {site.code} has no K3s join configuration yet; try again later")
    if not node.mac and Node.objects.exclude(pk=node.pk).exclude(state=NodeState.RETIRED).filter(mac=mac).exists():
        return _quarantine(node, check_in, reason=f"checked in with MAC {mac}, which another machine in service has")
    return _admit(node=node, check_in=check_in)


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


def _admit(*, node: Node, check_in: _CheckIn) -> Registration:
    token, now, actor = check_in.token, check_in.now, check_in.actor
    retry = node.state == NodeState.JOINING  # its first answer was lost: same outcome, new credential
    if not retry:
        node = node_transition(
            node=node,
            to=NodeState.JOINING,
            actor=actor,
            source=Source.DEVICE,
            reason=f"registered with bootstrap token {token.prefix}…",
            deadline=now + join_deadline(),
        )
    model = str(check_in.facts.get("model") or "")[:100]
    Node.objects.filter(pk=node.pk).update(
        facts=check_in.facts,
        last_seen_at=now,
        hardware_model=node.hardware_model or model,
        mac=node.mac or check_in.mac,  # a replacement pre-registered without its MAC learns it now
        updated_at=now,
    )
    node.refresh_from_db()
    token.used_at, token.used_by = now, node
    token.save(update_fields=["used_at", "used_by"])
    _credential, plaintext = node_credentials_issue(node=node, actor=actor, source=Source.DEVICE)
    audit_record(
        actor=actor,
        verb="register",
        obj=node,
        source=Source.DEVICE,
        payload={"site": token.site.code, "bootstrap_token": token.prefix, "retry": retry},
    )
    cluster = token.site.cluster
    return Registration(
        node=node, node_token=plaintext, server_url=cluster.join_server_url, join_token=cluster.join_token()
    )


def max_refusals() -> int:
    """Refused registrations after which a bootstrap token revokes itself (FLEET_BOOTSTRAP_MAX_REFUSALS, 5)."""
    return max(1, int(settings.FLEET_BOOTSTRAP_MAX_REFUSALS))


def max_quarantines() -> int:
    """Machines one bootstrap token may put in quarantine (FLEET_BOOTSTRAP_MAX_QUARANTINES, 3)."""
    return max(0, int(settings.FLEET_BOOTSTRAP_MAX_QUARANTINES))


def _refuse(
    check_in: _CheckIn,
    *,
    obj: Site | Node,
    reason: str,
    detail: str,
    field: str | None = None,
    quarantined: bool = False,
) -> Forbidden:
    """Count a refused identity against the token, audit it (on `obj`; changed only by a quarantine the
    caller made) and answer.

    `reason` is for staff (audit, log); `detail` is what the machine is told, which names neither the
    registered MAC nor another site. The token revokes itself at the limit, in the same transaction.
    """
    token = check_in.token
    token.refusals += 1  # the row is locked (select_for_update) for this transaction
    token.quarantines += int(quarantined)
    exhausted = token.refusals >= max_refusals()
    if exhausted:
        token.revoked_at = check_in.now
        token.revoke_reason = f"revoked after {token.refusals} refused registrations"
    token.save(update_fields=["refusals", "quarantines", "revoked_at", "revoke_reason"])
    payload = {
        "reason": reason,
        "serial": check_in.serial,
        "mac": check_in.mac,
        "bootstrap_token": token.prefix,
        "token_site": token.site.code,
        "refusals": token.refusals,
    }
    audit_record(actor=check_in.actor, verb="register_refused", obj=obj, source=Source.DEVICE, payload=payload)
    logger.warning(
        "registration refused: serial %s with bootstrap token %s… of site %s: %s",
        check_in.serial,
        token.prefix,
        token.site.code,
        reason,
    )
    if exhausted:
        audit_record(
            actor=check_in.actor,
            verb="revoke_bootstrap_token",
            obj=token.site,
            source=Source.DEVICE,
            payload={"token": token.prefix, "reason": token.revoke_reason},
        )
        detail += f"; bootstrap token {token.prefix}… is now revoked after {token.refusals} refused registrations"
    return Forbidden(detail, field=field)


def _quarantine(node: Node, check_in: _CheckIn, *, reason: str) -> FleetError:
    """Quarantine a machine of the token's site whose check-in does not match its record; its credential
    goes too. A machine in service cannot be (the table forbids it), nor one past the token's limit."""
    detail = f"machine {node.serial} does not match its record at site {check_in.site.code}"
    if NodeState.QUARANTINED not in NODE_TRANSITIONS[node.state]:
        return _refuse(check_in, obj=node, reason=reason, detail=f"{detail}; registration refused")
    if check_in.token.quarantines >= max_quarantines():
        return _refuse(
            check_in,
            obj=node,
            reason=f"{reason}; not quarantined: the token reached its limit of {max_quarantines()} quarantines",
            detail=f"{detail}; registration refused",
        )
    node_transition(node=node, to=NodeState.QUARANTINED, actor=check_in.actor, source=Source.DEVICE, reason=reason)
    node_credentials_revoke(node=node, actor=check_in.actor, source=Source.DEVICE, reason="quarantined: " + reason)
    return _refuse(
        check_in,
        obj=node,
        reason=reason,
        detail=f"{detail}; it is quarantined until staff accept it",
        quarantined=True,
    )


def _quarantine_unknown(check_in: _CheckIn) -> FleetError:
    """Record a machine nobody pre-registered, at the token's site, so staff can see and accept it; past
    the token's quarantine limit the attempt is only refused and audited."""
    site, serial, token = check_in.site, check_in.serial, check_in.token
    reason = f"unknown serial checked in with bootstrap token {token.prefix}…"
    if token.quarantines >= max_quarantines():
        return _refuse(
            check_in,
            obj=site,
            reason=f"{reason}; not recorded: the token reached its limit of {max_quarantines()} quarantines",
            detail=f"serial {serial} is not registered at site {site.code}; registration refused",
            field="serial",
        )
    node = Node.objects.create(
        serial=serial,
        site=site,
        hostname=_free_hostname(site, serial, check_in.facts),
        mac=check_in.mac,
        role=NodeRole.AGENT,
        hardware_model=str(check_in.facts.get("model") or "")[:100],
        state=NodeState.QUARANTINED,
        state_changed_at=check_in.now,
        state_reason=reason,
        facts=check_in.facts,
        last_seen_at=check_in.now,
    )
    audit_record(
        actor=check_in.actor,
        verb="quarantine",
        obj=node,
        source=Source.DEVICE,
        payload={"serial": serial, "mac": check_in.mac, "site": site.code, "reason": reason},
    )
    return _refuse(
        check_in,
        obj=node,
        reason=reason,
        detail=f"serial {serial} is not registered at site {site.code}; the machine is quarantined until staff "
        "accept it",
        field="serial",
        quarantined=True,
    )


def _free_hostname(site: Site, serial: str, facts: dict[str, Any]) -> str:
    """The machine's own hostname if it is valid and free at the site, else one derived from the serial."""
    reported = str(facts.get("hostname") or "").lower()
    slug = re.sub(r"[^a-z0-9-]+", "-", serial.lower()).strip("-")[:40] or "machine"
    live = Node.objects.filter(site=site).exclude(state=NodeState.RETIRED)
    for candidate in (reported, f"unknown-{slug}", f"unknown-{slug}-{hash_secret(serial)[:6]}"):
        if candidate and HOSTNAME_RE.match(candidate) and not live.filter(hostname=candidate).exists():
            return candidate
    return f"unknown-{secrets.token_hex(4)}"
