"""Every write to sites, clusters and nodes. Admin, API, tasks and commands call these, so each door
validates, audits and refuses in the same way."""

import datetime as dt
import json
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import transaction
from django.utils import timezone

from fleet.audit.services import Actor, audit_record, changes_between, field_values
from fleet.errors import Conflict, Invalid
from fleet.permissions import require_perm
from fleet.transitions import require_move, require_state
from fleet.validation import full_clean_or_invalid
from sites import crypto, health_records
from sites import kubeconfig as kubeconfig_parser
from sites.choices import (
    NODE_CREDENTIAL_REVOKED_STATES,
    NODE_MANUAL_PERMISSIONS,
    NODE_MANUAL_TRANSITIONS,
    NODE_TRANSITIONS,
    SITE_MANUAL_TRANSITIONS,
    SITE_TRANSITIONS,
    ClusterReachability,
    NodeState,
    SiteState,
)
from sites.models import Cluster, Node, Site
from sites.validators import normalize_mac, validate_repo_url

SITE_FIELDS = ("name", "region", "timezone", "labels", "business_hours", "maintenance_windows", "repo_url")
NODE_FIELDS = ("hostname", "mac", "role", "hardware_model")


# --- sites ------------------------------------------------------------------------------------------


def site_create(*, actor: Actor, source: str, code: str, **fields: Any) -> Site:
    """Create a site (state `planned` unless given). Raises Invalid for bad fields or a duplicate code."""
    unknown = set(fields) - set(SITE_FIELDS) - {"state"}
    if unknown:
        raise Invalid(f"unknown site fields: {', '.join(sorted(unknown))}")
    if "repo_url" in fields:
        fields["repo_url"] = _clean_repo_url(fields["repo_url"])
    site = Site(code=code, **fields)
    full_clean_or_invalid(site)
    with transaction.atomic():
        if Site.objects.filter(code=code).exists():
            raise Invalid(f"a site with code {code} already exists", field="code")
        site.save()
        cluster = Cluster.objects.create(site=site)
        audit_record(actor=actor, verb="create", obj=site, source=source, payload=field_values(site, SITE_FIELDS))
        health_records.site_health_refresh(site=site)
    site.cluster = cluster
    return site


def site_update(*, site: Site, actor: Actor, source: str, **changes: Any) -> Site:
    """Change a site's descriptive fields. State changes go through site_transition; the code never changes."""
    if "code" in changes and changes["code"] != site.code:
        raise Invalid("a site's code cannot be changed", field="code")
    changes.pop("code", None)
    unknown = set(changes) - set(SITE_FIELDS)
    if unknown:
        raise Invalid(f"these site fields cannot be changed here: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        site = Site.objects.select_for_update().get(pk=site.pk)
        before = field_values(site, SITE_FIELDS)
        if "repo_url" in changes and changes["repo_url"] != site.repo_url:
            # Only a new value is checked: a site whose host has since left FLEET_GIT_HOSTS can still be
            # renamed (SiteRepo refuses to use the old URL all the same).
            changes["repo_url"] = _clean_repo_url(changes["repo_url"])
        for key, value in changes.items():
            setattr(site, key, value)
        full_clean_or_invalid(site)
        diff = changes_between(before, field_values(site, SITE_FIELDS))
        if diff:
            site.save()
            audit_record(actor=actor, verb="update", obj=site, source=source, payload={"changes": diff})
    return site


def _clean_repo_url(value: Any) -> str:
    """The canonical repo_url, or Invalid naming `repo_url`: checked on write, again by SiteRepo at use."""
    try:
        return validate_repo_url(value)
    except ValidationError as exc:
        raise Invalid(f"repo_url: {exc.messages[0]}", errors={"repo_url": exc.messages}) from exc


def site_transition(*, site: Site, to: str, actor: Actor, source: str, reason: str = "") -> Site:
    """Move a site to another state if SITE_TRANSITIONS allows it; raise Conflict naming the current state."""
    require_state(to, states=SiteState.values, kind="site")
    with transaction.atomic():
        site = Site.objects.select_for_update().get(pk=site.pk)
        if site.state == to:
            return site
        require_move(SITE_TRANSITIONS, current=site.state, to=to, subject=f"site {site.code}")
        before = site.state
        site.state = to
        site.save(update_fields=["state", "updated_at"])
        audit_record(
            actor=actor,
            verb="transition",
            obj=site,
            source=source,
            payload={"from": before, "to": to, "reason": reason},
        )
        health_records.site_health_refresh(site=site)  # in service or not
    return site


def site_set_state(*, site: Site, to: str, actor: Actor, source: str, reason: str = "") -> Site:
    """A person's plain change of a site's state (API PATCH `state`, the admin's state field): any move of
    SITE_TRANSITIONS except decommissioning, which needs its own door (Invalid naming `state` pointing there)."""
    require_state(to, states=SiteState.values, kind="site")
    with transaction.atomic():
        current = Site.objects.select_for_update().get(pk=site.pk).state
        if current == to:
            return site
        require_move(SITE_TRANSITIONS, current=current, to=to, subject=f"site {site.code}")
        if to not in SITE_MANUAL_TRANSITIONS[current]:
            raise Invalid(
                f"site {site.code} is decommissioned only through the decommission action "
                f"(POST sites/{site.code}/decommission/ or the admin's action: the sites.decommission_site "
                "permission, a reason and the site's code typed to confirm), not by changing its state",
                field="state",
            )
        return site_transition(site=site, to=to, actor=actor, source=source, reason=reason)


def site_delete(*, site: Site, actor: Actor, source: str) -> None:
    """Delete a site that never had machines. A site with nodes is decommissioned, not deleted."""
    with transaction.atomic():
        if site.nodes.exists():
            raise Conflict(f"site {site.code} has nodes; decommission it instead of deleting it")
        audit_record(actor=actor, verb="delete", obj=site, source=source, payload=field_values(site, SITE_FIELDS))
        site.delete()


# --- clusters ---------------------------------------------------------------------------------------


def cluster_set_credentials(
    *,
    cluster: Cluster,
    actor: Actor,
    source: str,
    api_url: str | None = None,
    kubeconfig: str | None = None,
    token: str | None = None,
    ca_data: str | None = None,
    insecure_skip_tls_verify: bool = False,
) -> Cluster:
    """Store a cluster's endpoint and credentials, encrypted: a kubeconfig, or api_url + token (with
    ca_data and, outside production, insecure_skip_tls_verify).

    Both forms go through `sites.kubeconfig`, which accepts inline data only: a kubeconfig that would run
    a command, read a file on the workers or redirect the connection is refused with a 400 naming the
    field, before anything is written. The adapter parses the stored value again before each use.
    """
    if kubeconfig and token:
        raise Invalid("give either a kubeconfig or a token, not both", field="kubeconfig")
    try:
        if kubeconfig:
            for name, value in (("ca_data", ca_data), ("insecure_skip_tls_verify", insecure_skip_tls_verify)):
                if value:
                    raise Invalid(
                        f"{name} goes with a token, not a kubeconfig (it carries its CA as certificate-authority-data)",
                        field=name,
                    )
            parsed = kubeconfig_parser.parse_kubeconfig(kubeconfig, production=settings.PRODUCTION)
            if api_url and (not isinstance(api_url, str) or api_url.rstrip("/") != parsed.server):
                raise Invalid(
                    f"api_url {api_url!r} is not the kubeconfig's server {parsed.server!r}; give one of them",
                    field="api_url",
                )
            secret: dict[str, Any] = {"kubeconfig": kubeconfig}
        elif token:
            if not api_url:
                raise Invalid("api_url is required with a token", field="api_url")
            parsed = kubeconfig_parser.parse_token(
                api_url=api_url,
                token=token,
                ca_data=ca_data,
                insecure_skip_tls_verify=insecure_skip_tls_verify,
                production=settings.PRODUCTION,
            )
            secret = {"token": token, "ca_data": ca_data or None, "insecure_skip_tls_verify": insecure_skip_tls_verify}
        else:
            raise Invalid("give a kubeconfig, or an api_url and a token", field="kubeconfig")
    except kubeconfig_parser.CredentialsInvalid as exc:
        raise Invalid(exc.message, field=exc.field) from exc
    api_url = parsed.server
    with transaction.atomic():
        cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
        if cluster.api_url == api_url and _stored_secret(cluster) == secret:
            return cluster  # unchanged: no write, no audit event, so imports stay idempotent
        cluster.api_url = api_url
        cluster.credentials_encrypted = crypto.encrypt(json.dumps(secret))
        cluster.reachability = ClusterReachability.UNKNOWN
        cluster.save()
        health_records.site_health_refresh(site=cluster.site_id)  # not probed with these credentials yet
        # The payload says what kind of credential was set, never the credential.
        audit_record(
            actor=actor,
            verb="set_credentials",
            obj=cluster,
            source=source,
            payload={"api_url": api_url, "kind": parsed.kind},
        )
    return cluster


def _stored_secret(cluster: Cluster) -> dict[str, Any] | None:
    """What is stored now, or None when it cannot be read (then anything given replaces it)."""
    try:
        return cluster.credentials()
    except (ImproperlyConfigured, ValueError):
        return None


def cluster_set_join_config(
    *, cluster: Cluster, actor: Actor, source: str, server_url: str | None = None, token: str | None = None
) -> Cluster:
    """Set what registering machines of the site are told to join: the K3s server URL and join token.

    Either may be given alone; the token is encrypted at rest and never shown again. Not audited when
    nothing changes, so an import can call this every time.
    """
    if server_url is None and token is None:
        raise Invalid("give join_server_url, join_token or both", field="join_server_url")
    if server_url is not None and not server_url.startswith(("http://", "https://")):
        raise Invalid(f"{server_url!r} is not an http(s) URL", field="join_server_url")
    if token is not None and not token.strip():
        raise Invalid("join_token cannot be blank", field="join_token")
    with transaction.atomic():
        cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
        url_changed = server_url is not None and server_url != cluster.join_server_url
        token_changed = token is not None and token != cluster.join_token()
        if not url_changed and not token_changed:
            return cluster
        if url_changed:
            cluster.join_server_url = server_url or ""
        if token_changed:
            cluster.join_token_encrypted = crypto.encrypt(token or "")
        cluster.save(update_fields=["join_server_url", "join_token_encrypted", "updated_at"])
        audit_record(
            actor=actor,
            verb="set_join_config",
            obj=cluster,
            source=source,
            payload={"join_server_url": cluster.join_server_url, "token_changed": token_changed},
        )
    return cluster


def clusters_rotate_keys() -> int:
    """Re-encrypt every stored credential under the first Fernet key. Returns how many were rewritten."""
    count = 0
    secrets = Cluster.objects.exclude(credentials_encrypted="", join_token_encrypted="")
    for cluster in secrets.only("pk", "credentials_encrypted", "join_token_encrypted").iterator():
        Cluster.objects.filter(pk=cluster.pk).update(
            credentials_encrypted=_rotated(cluster.credentials_encrypted),
            join_token_encrypted=_rotated(cluster.join_token_encrypted),
        )
        count += 1
    return count


def _rotated(token: str) -> str:
    return crypto.rotate(token) if token else ""


# --- nodes ------------------------------------------------------------------------------------------


def node_create(
    *,
    actor: Actor,
    source: str,
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


def node_update(*, node: Node, actor: Actor, source: str, **changes: Any) -> Node:
    """Change a node's descriptive fields. The serial never changes; the site only before it ships."""
    if "serial" in changes and changes.pop("serial") != node.serial:
        raise Invalid("a node's serial cannot be changed", field="serial")
    new_site = changes.pop("site", None)
    unknown = set(changes) - set(NODE_FIELDS)
    if unknown:
        raise Invalid(f"these node fields cannot be changed here: {', '.join(sorted(unknown))}")
    if "mac" in changes:
        try:
            changes["mac"] = normalize_mac(changes["mac"])
        except ValidationError as exc:
            raise Invalid(exc.messages[0], field="mac") from exc
    with transaction.atomic():
        node = Node.objects.select_for_update().select_related("site").get(pk=node.pk)
        before = {**field_values(node, NODE_FIELDS), "site": node.site.code}
        if new_site is not None and new_site.pk != node.site_id:
            if node.state != NodeState.PREREGISTERED:
                raise Conflict(f"node {node.hostname} is {node.state}; only a pre-registered node can move site")
            node.site = new_site
        for key, value in changes.items():
            setattr(node, key, value)
        full_clean_or_invalid(node)
        _check_node_unique(node)
        diff = changes_between(before, {**field_values(node, NODE_FIELDS), "site": node.site.code})
        if diff:
            node.save()
            audit_record(actor=actor, verb="update", obj=node, source=source, payload={"changes": diff})
    return node


def node_transition(
    *,
    node: Node,
    to: str,
    actor: Actor,
    source: str,
    reason: str = "",
    deadline: dt.datetime | None = None,
) -> Node:
    """Move a node to `to` if NODE_TRANSITIONS allows it, recording why; raise Conflict otherwise.

    Moving into wiping, wiped, retired or quarantined revokes the machine's device credential in the same
    transaction, whoever asks: a machine in those states never speaks for the node again (it registers
    afresh with a bootstrap token after a wipe). Moving to the state it is already in is a no-op, so a
    workflow step can call this twice. This is the table's check only; a person's request goes through
    node_set_state (or a lifecycle door), which limits what people may do.
    """
    require_state(to, states=NodeState.values, kind="node")
    with transaction.atomic():
        locked = Node.objects.select_for_update().get(pk=node.pk)
        if locked.state == to:
            return locked
        require_move(NODE_TRANSITIONS, current=locked.state, to=to, subject=f"node {locked.hostname}")
        before = locked.state
        locked.state = to
        locked.state_changed_at = timezone.now()
        locked.state_deadline = deadline
        locked.state_reason = reason[:500]
        locked.save(update_fields=["state", "state_changed_at", "state_deadline", "state_reason", "updated_at"])
        audit_record(
            actor=actor,
            verb="transition",
            obj=locked,
            source=source,
            payload={"from": before, "to": to, "reason": reason},
        )
        if to in NODE_CREDENTIAL_REVOKED_STATES:
            from sites import devices  # sites.devices imports this module

            devices.node_credentials_revoke(node=locked, actor=actor, source=source, reason=f"node {to}: {reason}")
        # Whether it counts for its site's health now, and its node-down alert once it left service.
        health_records.node_after_transition(node=locked, before=before, source=source)
    node.refresh_from_db()
    return node


def node_set_state(*, node: Node, to: str, actor: Actor, source: str, reason: str = "") -> Node:
    """A person's plain change of a node's state (API PATCH `state`, the admin's state field).

    Only the moves of NODE_MANUAL_TRANSITIONS: cordon, uncordon, mark broken, accept a quarantined machine
    (that one with sites.provision_node). A move the table forbids altogether is a Conflict naming the
    state (409); one that belongs to a workflow or to the retire door is Invalid naming `state` (400) and
    says which door to use; nothing is written either way.
    """
    require_state(to, states=NodeState.values, kind="node")
    with transaction.atomic():
        current = Node.objects.select_for_update().get(pk=node.pk).state
        if current == to:
            return node
        require_move(NODE_TRANSITIONS, current=current, to=to, subject=f"node {node.hostname}")
        if to not in NODE_MANUAL_TRANSITIONS.get(current, frozenset()):
            raise Invalid(_not_manual(node, current, to), field="state")
        permission = NODE_MANUAL_PERMISSIONS.get((current, to))
        if permission:
            require_perm(actor, permission)
        return node_transition(node=node, to=to, actor=actor, source=source, reason=reason)


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


# --- probing ----------------------------------------------------------------------------------------


def site_probe(*, site: Site) -> Cluster:
    """Probe the site's cluster now and record what it says (sites.probing: reachability, nodes, health)."""
    from sites import probing  # sites.probing records through this module's neighbours, not the other way

    return probing.site_probe(site=site)


def site_probe_request(*, sites: list[Site], actor: Actor, source: str) -> int:
    """Queue a probe of each site's cluster (audited); the io workers carry them out. Returns the count."""
    from sites.tasks import site_probe_task

    with transaction.atomic():
        for site in sites:
            audit_record(actor=actor, verb="probe", obj=site, source=source)
            site_probe_task.delay_on_commit(site.pk)  # type: ignore[attr-defined]  # Celery 5.4+, not in stubs
    return len(sites)


def node_delete(*, node: Node, actor: Actor, source: str) -> None:
    """Delete a node that never left the warehouse; any other node is retired instead."""
    with transaction.atomic():
        node = Node.objects.select_for_update().get(pk=node.pk)
        if node.state != NodeState.PREREGISTERED:
            raise Conflict(f"node {node.hostname} is {node.state}; only a pre-registered node can be deleted")
        audit_record(actor=actor, verb="delete", obj=node, source=source, payload={"serial": node.serial})
        node.delete()
