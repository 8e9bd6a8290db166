"""The doors into the machine lifecycle workflows: provision, wipe and replace a node (the site workflows'
doors, onboard and decommission, are sites.site_lifecycle).

Admin, API and scripts call these; each validates, refuses while another exclusive workflow holds the
node (409 naming it) or while the node's state does not allow the action (409 naming the state),
audits the request with its actor, and starts the workflow run in the same transaction.
Retiring is final, so like a wipe it needs its own permission (checked here too, not only at the
doors), a reason and the node's hostname typed to confirm.
Timings (polls, drain and wipe deadlines, the run's deadline) come from settings and travel in the run's
context, so the worker uses what the request was made with.
"""

import datetime as dt
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from fleet.audit.choices import Source
from fleet.audit.services import Actor, audit_record
from fleet.errors import Conflict, Invalid
from fleet.permissions import require_perm
from fleet.workflows import WorkflowRun, active_run
from fleet.workflows import start as workflow_start
from sites import services
from sites.choices import (
    NODE_RETIRABLE_STATES,
    PROVISION_KIND,
    REPLACE_KIND,
    WIPE_KIND,
    NodeRole,
    NodeState,
)
from sites.models import Node
from sites.validators import normalize_mac, validate_hostname

PROVISIONABLE_STATES = frozenset({NodeState.PREREGISTERED, NodeState.WIPED, NodeState.JOINING})
WIPEABLE_STATES = frozenset({NodeState.ACTIVE, NodeState.CORDONED, NodeState.DRAINING, NodeState.BROKEN})
REPLACEABLE_STATES = frozenset(
    {NodeState.ACTIVE, NodeState.CORDONED, NodeState.DRAINING, NodeState.BROKEN, NodeState.JOINING}
)


AUDITED_KEYS = ("reason", "rejoin", "retire", "replacement_serial", "shipment_ref", "hostname")


def timings() -> dict[str, float]:
    """What the steps poll and wait with (the FLEET_NODE_* settings), fixed in the run's context at start."""
    return {
        "poll": settings.FLEET_NODE_POLL_SECONDS,
        "checkin_poll": settings.FLEET_NODE_CHECKIN_POLL_SECONDS,
        "drain_seconds": settings.FLEET_NODE_DRAIN_SECONDS,
        "wipe_seconds": settings.FLEET_NODE_WIPE_SECONDS,
    }


def _run_deadline(kind: str) -> dt.datetime | None:
    """FLEET_NODE_RUN_DEADLINES = {"node.wipe": seconds, ...} overrides a kind's default deadline."""
    seconds = (getattr(settings, "FLEET_NODE_RUN_DEADLINES", None) or {}).get(kind)
    return timezone.now() + dt.timedelta(seconds=float(seconds)) if seconds else None


def _refuse_if_busy(node: Node) -> None:
    active = active_run(node)
    if active is not None:
        step = f" at step {active.current_step}" if active.current_step else ""
        raise Conflict(
            f"{active.kind} run {active.pk} is {active.state}{step} on node {node.hostname}: one workflow at a time",
            field="workflow",
        )


def _refuse_state(node: Node, allowed: frozenset[str], action: str) -> None:
    if node.state not in allowed:
        raise Conflict(
            f"node {node.hostname} is {node.state}; only a node that is {', '.join(sorted(allowed))} can be {action}",
            field="state",
        )


def _check_confirm(node: Node, confirm: str) -> None:
    if (confirm or "").strip() != node.hostname:
        raise Invalid(f"type the node's hostname ({node.hostname}) to confirm", field="confirm")


def _check_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("a reason is required", field="reason")
    return reason


def _locked(node: Node) -> Node:
    return Node.objects.select_for_update().select_related("site").get(pk=node.pk)


def _start(node: Node, kind: str, actor: Actor, source: Source, verb: str, context: dict[str, Any]) -> WorkflowRun:
    run = workflow_start(
        kind=kind,
        subject=node,
        actor=actor,
        source=source,
        context={**timings(), **context},
        deadline=_run_deadline(kind),
    )
    shown = {
        k: v
        for k, v in context.items()
        if k in ("reason", "rejoin", "retire", "replacement_serial", "shipment_ref", "hostname")
    }
    audit_record(actor=actor, verb=verb, obj=node, source=source, payload={"run": run.pk, **shown})
    return run


def node_provision_request(*, node: Node, actor: Actor, source: Source) -> WorkflowRun:
    """Start `node.provision` for a pre-registered (or wiped) machine: await its check-in and Ready node,
    label it, make it `active`."""
    with transaction.atomic():
        node = _locked(node)
        _refuse_if_busy(node)
        _refuse_state(node, PROVISIONABLE_STATES, "provisioned")
        return _start(node, PROVISION_KIND, actor, source, "provision_request", {})


def node_wipe_request(
    *,
    node: Node,
    actor: Actor,
    source: Source,
    reason: str,
    confirm: str,
    rejoin: bool = False,
    retire: bool = False,
) -> WorkflowRun:
    """Start `node.wipe`: cordon, drain, revoke, factory-reset the machine; with `rejoin` it registers
    again (with a fresh single-use token) and comes back `active`, with `retire` it is retired.

    `confirm` must be the node's hostname (Invalid naming `confirm` otherwise).
    """
    reason = _check_reason(reason)
    _check_confirm(node, confirm)
    if rejoin and retire:
        raise Invalid("a wiped machine either rejoins or is retired, not both", field="retire")
    with transaction.atomic():
        node = _locked(node)
        _refuse_if_busy(node)
        _refuse_state(node, WIPEABLE_STATES, "wiped")
        context = {"reason": reason, "rejoin": bool(rejoin), "retire": bool(retire)}
        return _start(node, WIPE_KIND, actor, source, "wipe_request", context)


def node_replace_request(
    *,
    node: Node,
    actor: Actor,
    source: Source,
    reason: str,
    confirm: str,
    replacement_serial: str,
    shipment_ref: str = "",
    replacement_mac: str = "",
    hostname: str | None = None,
    role: str | None = None,
) -> WorkflowRun:
    """Start `node.replace` (throw-away): the old machine leaves the cluster and is retired; the new
    serial is pre-registered at the same site (hostname and role from the old node unless given), awaited
    however long shipping takes, joined, labelled and re-hydrated from the site's latest backups.

    Invalid (400) for a confirm mismatch, a serial already in use, a bad MAC or hostname.
    """
    reason = _check_reason(reason)
    _check_confirm(node, confirm)
    serial = (replacement_serial or "").strip()
    if not serial:
        raise Invalid("the replacement's serial is required", field="replacement_serial")
    try:
        mac = normalize_mac(replacement_mac) if replacement_mac else ""  # else learnt at check-in
    except ValidationError as exc:
        raise Invalid(f"the replacement's MAC: {exc.messages[0]}", field="replacement_mac") from exc
    if role is not None and role not in NodeRole.values:
        raise Invalid(f"{role!r} is not a role", field="role")
    with transaction.atomic():
        node = _locked(node)
        _refuse_if_busy(node)
        _refuse_state(node, REPLACEABLE_STATES, "replaced")
        taken = Node.objects.filter(serial=serial).select_related("site").first()
        if taken is not None:
            raise Invalid(
                f"serial {serial} is already in use by node {taken.hostname} at {taken.site.code}",
                field="replacement_serial",
            )
        if mac and Node.objects.exclude(state=NodeState.RETIRED).exclude(pk=node.pk).filter(mac=mac).exists():
            raise Invalid(f"another machine in service has MAC {mac}", field="replacement_mac")
        name = (hostname or "").strip() or node.hostname
        try:
            validate_hostname(name)
        except ValidationError as exc:
            raise Invalid(exc.messages[0], field="hostname") from exc
        live = Node.objects.filter(site=node.site, hostname=name).exclude(state=NodeState.RETIRED).exclude(pk=node.pk)
        if live.exists():
            raise Invalid(f"site {node.site.code} already has a node named {name}", field="hostname")
        context = {
            "reason": reason,
            "replacement_serial": serial,
            "replacement_mac": mac,
            "shipment_ref": (shipment_ref or "").strip(),
            "hostname": name,
            "role": role or node.role,
        }
        return _start(node, REPLACE_KIND, actor, source, "replace_request", context)


def node_retire(*, node: Node, actor: Actor, source: Source, reason: str, confirm: str) -> Node:
    """Retire a machine for good (needs sites.retire_node): one that is pre-registered, wiped or quarantined.
    Its device credential is revoked with the move (services.node_transition). A machine in service is
    wiped with `retire` or replaced instead, so nothing leaves the fleet with the site's data on it.

    `confirm` must be the node's hostname (Invalid naming `confirm` otherwise).
    """
    require_perm(actor, "sites.retire_node")
    reason = _check_reason(reason)
    _check_confirm(node, confirm)
    with transaction.atomic():
        node = _locked(node)
        _refuse_if_busy(node)
        _refuse_state(node, NODE_RETIRABLE_STATES, "retired")
        audit_record(actor=actor, verb="retire_request", obj=node, source=source, payload={"reason": reason})
        return services.node_transition(node=node, to=NodeState.RETIRED, actor=actor, source=source, reason=reason)
