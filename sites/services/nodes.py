"""Nodes: pre-register a machine, describe it, move it through its lifecycle, delete it before it ships."""

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from fleet.audit.choices import Source
from fleet.audit.services import Actor, audit_record, field_values
from fleet.errors import Conflict, Invalid
from fleet.permissions import require_perm
from fleet.transitions import StateMachine, state_transition
from fleet.updates import model_delete, model_update
from fleet.validation import full_clean_or_invalid
from sites import devices, health_records
from sites.choices import (
    NODE_CREDENTIAL_REVOKED_STATES,
    NODE_MANUAL_PERMISSIONS,
    NODE_MANUAL_TRANSITIONS,
    NODE_TRANSITIONS,
    NodeState,
    SiteState,
)
from sites.models import Node, Site
from sites.validators import normalize_mac

# What a person or an import may describe on a node (service, API serializer, admin form); the serial is
# set once, the site changes only before the machine ships (node_update), the state by transition.
NODE_FIELDS = ("hostname", "mac", "role", "hardware_model")

NODE_MACHINE: StateMachine[Node] = StateMachine(
    table=NODE_TRANSITIONS,
    states=NodeState.values,
    kind="node",
    subject=lambda node: f"node {node.hostname}",
    changed_at="state_changed_at",
)


def node_create(
    *,
    actor: Actor,
    source: Source,
    serial: str,
    site: Site,
    hostname: str,
    mac: str,
    role: str = "agent",
    hardware_model: str = "",
    state: str = NodeState.PREREGISTERED,
) -> Node:
    """Pre-register a machine at a site (staff enter the serial before shipping it)."""
    serial = serial.strip()
    if not serial:
        raise Invalid("serial is required", field="serial")
    try:
        # A replacement shipped by the vendor may be pre-registered before anyone knows its MAC: it is
        # recorded when the machine checks in (sites.devices).
        mac = normalize_mac(mac) if mac else ""
    except ValidationError as exc:
        raise Invalid(exc.messages[0], field="mac") from exc
    if site.state == SiteState.DECOMMISSIONED:
        raise Conflict(f"site {site.code} is decommissioned; it takes no new machines", field="site")
    node = Node(
        serial=serial, site=site, hostname=hostname, mac=mac, role=role, hardware_model=hardware_model, state=state
    )
    full_clean_or_invalid(node)
    with transaction.atomic():
        _check_node_unique(node)
        node.state_changed_at = timezone.now()
        node.save()
        audit_record(
            actor=actor,
            verb="create",
            obj=node,
            source=source,
            payload={"serial": serial, "site": site.code, **field_values(node, NODE_FIELDS), "state": state},
        )
    return node


def _check_node_unique(node: Node) -> None:
    others = Node.objects.exclude(pk=node.pk)
    if others.filter(serial=node.serial).exists():
        raise Invalid(f"a node with serial {node.serial} already exists", field="serial")
    live = others.exclude(state=NodeState.RETIRED)
    if live.filter(site=node.site, hostname=node.hostname).exists():
        raise Invalid(f"site {node.site.code} already has a node named {node.hostname}", field="hostname")
    if node.mac and live.filter(mac=node.mac).exists():
        raise Invalid(f"another machine in service has MAC {node.mac}", field="mac")


def node_update(*, node: Node, actor: Actor, source: Source, **changes: Any) -> Node:
    """Change a node's descriptive fields. The serial never changes; the site only before it ships."""
    if "serial" in changes and changes.pop("serial") != node.serial:
        raise Invalid("a node's serial cannot be changed", field="serial")
    if changes.get("site", node) is None:
        del changes["site"]
    if "mac" in changes:
        try:
            changes["mac"] = normalize_mac(changes["mac"])
        except ValidationError as exc:
            raise Invalid(exc.messages[0], field="mac") from exc

    def validate(locked: Node, changed: set[str]) -> None:
        full_clean_or_invalid(locked)
        _check_node_unique(locked)

    def site_moves_unshipped(locked: Node, diff: dict[str, list[Any]]) -> list[str]:
        if "site" in diff and locked.state != NodeState.PREREGISTERED:
            raise Conflict(f"node {locked.hostname} is {locked.state}; only a pre-registered node can move site")
        return []

    return model_update(
        node,
        changes=changes,
        fields=(*NODE_FIELDS, "site"),
        kind="node",
        actor=actor,
        source=source,
        values=lambda row: {**field_values(row, NODE_FIELDS), "site": row.site.code},
        validate=validate,
        on_change=site_moves_unshipped,
    )


def node_transition(
    *,
    node: Node,
    to: str,
    actor: Actor,
    source: Source,
    reason: str = "",
    deadline: dt.datetime | None = None,
) -> Node:
    """Move a node to `to` if NODE_TRANSITIONS allows it, recording why; raise Conflict otherwise.

    Moving into wiping, wiped, retired or quarantined revokes the machine's device credential in the same
    transaction, whoever asks: a machine in those states never speaks for the node again (it registers
    afresh with a bootstrap token after a wipe). Moving to the state it is already in is a no-op, so a
    workflow step can call this twice. This is the table's check only; a person's request goes through
    node_set_state (or a lifecycle door), which limits what people may do. Returns `node`, refreshed.
    """
    return _node_move(node=node, to=to, actor=actor, source=source, reason=reason, deadline=deadline)


def node_set_state(*, node: Node, to: str, actor: Actor, source: Source, reason: str = "") -> Node:
    """A person's plain change of a node's state (API PATCH `state`, the admin's state field).

    Only the moves of NODE_MANUAL_TRANSITIONS: cordon, uncordon, mark broken, accept a quarantined machine
    (that one with sites.provision_node). A move the table forbids altogether is a Conflict naming the
    state (409); one that belongs to a workflow or to the retire door is Invalid naming `state` (400) and
    says which door to use; nothing is written either way.
    """

    def manual_only(locked: Node) -> None:
        if to not in NODE_MANUAL_TRANSITIONS.get(locked.state, frozenset()):
            raise Invalid(_not_manual(locked, locked.state, to), field="state")
        permission = NODE_MANUAL_PERMISSIONS.get((locked.state, to))
        if permission:
            require_perm(actor, permission)

    return _node_move(node=node, to=to, actor=actor, source=source, reason=reason, check=manual_only)


def _node_move(
    *,
    node: Node,
    to: str,
    actor: Actor,
    source: Source,
    reason: str,
    deadline: dt.datetime | None = None,
    check: Callable[[Node], None] | None = None,
) -> Node:
    def record(locked: Node, now: dt.datetime) -> list[str]:
        locked.state_deadline = deadline
        locked.state_reason = reason[:500]
        return ["state_deadline", "state_reason"]

    def after(locked: Node, before: str) -> None:
        if to in NODE_CREDENTIAL_REVOKED_STATES:
            devices.node_credentials_revoke(node=locked, actor=actor, source=source, reason=f"node {to}: {reason}")
        # Whether it counts for its site's health now, and its node-down alert once it left service.
        health_records.node_after_transition(node=locked, before=before, source=source)

    state_transition(
        node,
        to=to,
        machine=NODE_MACHINE,
        actor=actor,
        source=source,
        reason=reason,
        check=check,
        record=record,
        after=after,
    )
    node.refresh_from_db()
    return node


def _not_manual(node: Node, current: str, to: str) -> str:
    """Why a person cannot make this move by changing the state, and what to do instead."""
    subject = f"node {node.hostname} is {current}"
    if to in (NodeState.WIPING, NodeState.WIPED, NodeState.DRAINING):
        door = (
            f"a node becomes {to} only through the wipe workflow (POST nodes/{node.pk}/wipe/ or the admin's "
            "Wipe action: sites.wipe_node, a reason and the hostname typed to confirm)"
        )
    elif to == NodeState.RETIRED:
        door = (
            f"retiring needs the retire action (POST nodes/{node.pk}/retire/ or the admin's Retire action: "
            "sites.retire_node, a reason and the hostname typed to confirm), for a node that is "
            "pre-registered, wiped or quarantined; wipe (with retire) or replace a machine in service"
        )
    elif to == NodeState.QUARANTINED:
        door = "only a machine's own check-in quarantines it"
    else:
        door = f"a node becomes {to} through a workflow (provision, wipe, replace), not a change of its state"
    allowed = sorted(NODE_MANUAL_TRANSITIONS.get(current, frozenset()))
    may = f"; from {current} a person may set {', '.join(allowed)}" if allowed else ""
    return f"{subject}: {door}{may}"


def node_delete(*, node: Node, actor: Actor, source: Source) -> None:
    """Delete a node that never left the warehouse; any other node is retired instead."""

    def preregistered(row: Node) -> None:
        if row.state != NodeState.PREREGISTERED:
            raise Conflict(f"node {row.hostname} is {row.state}; only a pre-registered node can be deleted")

    model_delete(node, check=preregistered, payload=lambda row: {"serial": row.serial}, actor=actor, source=source)
