"""Node-down alerts: a machine in service that has not been ready for FLEET_NODE_DOWN_AFTER while its
cluster answers. The alert asks support to look at the machine and, if it is dead, to replace it (the
node's Replace action). It is resolved by the system when the node is ready again or leaves service
(broken for a replacement, wiped, retired), never by hand: it says what is true.

Opening and resolving are audited (actor `system:health`). One open alert per node is a database
constraint, so two probes racing open one alert. An unreachable site opens none: that is the network
or the site, said by the site's health, not a dead machine.
"""

import datetime as dt
from collections.abc import Sequence

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from fleet.audit.choices import Source, SystemActor
from fleet.audit.services import audit_record
from sites.choices import NODE_IN_SERVICE_STATES, AlertKind, NodeHealth
from sites.messages import clock
from sites.models import Alert, Node, Site

ACTOR = SystemActor.HEALTH


def node_down_alerts_sync(
    *, probed: Sequence[tuple[Site, list[Node], bool, dt.datetime]], source: Source = Source.BEAT
) -> None:
    """Open the node-down alerts that are due and resolve those that no longer hold, for each probed site.

    Each entry of `probed` is a site, its nodes with their health as just recorded (sites.health_records),
    whether its cluster answered, and the probe's time. One query (the open alerts of every site) when
    nothing changes.
    """
    down_after = dt.timedelta(seconds=settings.FLEET_NODE_DOWN_AFTER)
    open_alerts: dict[int, dict[int | None, Alert]] = {site.pk: {} for site, *_ in probed}
    for opened in Alert.objects.filter(site_id__in=open_alerts, kind=AlertKind.NODE_DOWN, resolved_at__isnull=True):
        open_alerts[opened.site_id][opened.node_id] = opened
    for site, nodes, cluster_answered, now in probed:
        site_open = open_alerts[site.pk]
        for node in nodes:
            alert = site_open.pop(node.pk, None)
            if node.state not in NODE_IN_SERVICE_STATES:
                if alert is not None:
                    _resolve(alert, f"node {node.hostname} is {node.state}", now, source)
            elif node.health == NodeHealth.READY:
                if alert is not None:
                    _resolve(alert, f"node {node.hostname} is ready again", now, source)
            elif alert is None and cluster_answered and node.health_since and now - node.health_since >= down_after:
                _open(site, node, now, source)
        for gone in site_open.values():  # nodes that are gone (retired)
            _resolve(gone, "the node left the site", now, source)


def node_down_resolve_if_out_of_service(*, node: Node, source: Source, now: dt.datetime | None = None) -> None:
    """Resolve the node's open node-down alert when it left service (called by node transitions)."""
    if node.state in NODE_IN_SERVICE_STATES:
        return
    for alert in Alert.objects.filter(node=node, kind=AlertKind.NODE_DOWN, resolved_at__isnull=True):
        _resolve(alert, f"node {node.hostname} is {node.state}", now or timezone.now(), source)


def node_down_message(node: Node, now: dt.datetime) -> str:
    words = "not seen" if node.health == NodeHealth.NOT_SEEN else "not ready"
    since = f" since {clock(node.health_since, now)}" if node.health_since else ""
    why = f" ({node.health_reason})" if node.health_reason else ""
    return (
        f"node {node.hostname} at {node.site.code} is {words}{since}{why}: check the machine (power, network); "
        "if it is dead, replace it"
    )[:500]


def _open(site: Site, node: Node, now: dt.datetime, source: Source) -> Alert | None:
    node.site = site
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                kind=AlertKind.NODE_DOWN, site=site, node=node, message=node_down_message(node, now), opened_at=now
            )
            audit_record(
                actor=ACTOR,
                verb="alert_open",
                obj=alert,
                source=source,
                payload={"kind": alert.kind, "node": node.pk, "site": site.code, "message": alert.message},
            )
    except IntegrityError:
        return None  # another probe opened it a moment ago: one open alert per node
    return alert


def _resolve(alert: Alert, resolution: str, now: dt.datetime, source: Source) -> None:
    with transaction.atomic():
        updated = Alert.objects.filter(pk=alert.pk, resolved_at__isnull=True).update(
            resolved_at=now, resolution=resolution[:200]
        )
        if updated:
            alert.resolved_at, alert.resolution = now, resolution[:200]
            audit_record(
                actor=ACTOR,
                verb="alert_resolve",
                obj=alert,
                source=source,
                payload={"kind": alert.kind, "node": alert.node_id, "resolution": resolution},
            )
