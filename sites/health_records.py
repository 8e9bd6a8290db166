"""Health, recorded: the writes around the pure decisions of sites.health.

Whoever changes an input of a site's health calls in here, and the columns (`Site.health`,
`Node.health`, their `since` and `reason`) are written from the same decision every time:

- the probe (sites.probing): reachability, and each node as its cluster's Node objects say;
- the device heartbeat (sites.heartbeats): a machine not seen is heard from again;
- the drift check (rollouts.drift, through `site_record_sync`): applied revision, repository head, a
  failing sync, the latest rollout's failure;
- node and site transitions (sites.services): which nodes count, whether the site is in service.

Health is an observation, so these writes are not audited; the alerts they open and resolve are
(sites.alerts). Each writer takes the site's row lock for its read-decide-write, after any node rows it
holds (node, then site, everywhere), so two writers never interleave their decisions.
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from fleet.audit.choices import Source
from sites import health
from sites.choices import NodeHealth, NodeState
from sites.health import Health, NodeObservation, NodeSummary, SiteInputs
from sites.models import Cluster, Node, Site


def site_inputs(site: Site, cluster: Cluster | None, nodes: Sequence[NodeSummary]) -> SiteInputs:
    """What the site's health is decided from, as recorded now (`nodes`: its machines that are not retired)."""
    return SiteInputs(
        state=site.state,
        reachability=cluster.reachability if cluster else "unknown",
        has_credentials=bool(cluster and cluster.has_credentials),
        cluster_error=cluster.last_error if cluster else "",
        failing_since=cluster.failing_since if cluster else None,
        nodes=tuple(nodes),
        applied_revision=site.last_applied_revision,
        head_revision=site.repo_head_revision,
        drifted_since=site.drifted_since,
        sync_error=site.sync_error,
        rollout_error=site.rollout_error,
    )


def site_health_refresh(*, site: Site | int, now: dt.datetime | None = None, cluster: Cluster | None = None) -> Health:
    """Decide the site's health again from what is recorded, and write it if it changed. `cluster`, when
    given, is the site's cluster as its only writer (the probe) has just recorded it."""
    site_id = site if isinstance(site, int) else site.pk
    at = now or timezone.now()
    verdicts = sites_health_refresh(checks=[SiteCheck(site if isinstance(site, Site) else None, site_id, at, cluster)])
    if site_id not in verdicts:
        raise Site.DoesNotExist(f"no site {site_id}")
    return verdicts[site_id]


@dataclass(frozen=True)
class SiteCheck:
    """One site whose health is to be decided again: its in-memory row to keep in step (or None), its id,
    the time of the decision, and its cluster as just recorded by the probe (or None: read it)."""

    site: Site | None
    site_id: int
    now: dt.datetime
    cluster: Cluster | None = None


def sites_health_refresh(*, checks: Sequence[SiteCheck]) -> dict[int, Health]:
    """Decide each site's health again from what is recorded and write those that changed.

    Three queries for any number of sites (their rows locked in id order, the clusters not given, the
    nodes) and one UPDATE per site whose health changed: a probe of a chunk of sites costs what a probe
    of one did."""
    by_id = {check.site_id: check for check in checks}
    verdicts: dict[int, Health] = {}
    with transaction.atomic(savepoint=False):  # within a caller's transaction, no savepoint needed
        locked = list(Site.objects.select_for_update().filter(pk__in=by_id).order_by("pk"))
        clusters = {
            check.site_id: check.cluster
            for check in checks
            if check.cluster is not None and check.cluster.site_id == check.site_id
        }
        unread = [site_id for site_id in by_id if site_id not in clusters]
        clusters.update({c.site_id: c for c in Cluster.objects.filter(site_id__in=unread)} if unread else {})
        nodes: dict[int, list[NodeSummary]] = defaultdict(list)
        rows = (
            Node.objects.filter(site_id__in=by_id)
            .exclude(state=NodeState.RETIRED)
            .order_by("site_id", "hostname")
            .values_list("site_id", "hostname", "state", "health", "health_since")
        )
        for site_id, hostname, state, node_health, since in rows:
            nodes[site_id].append(NodeSummary(hostname, state, node_health, since))
        for row in locked:
            current = Health(row.health, row.health_since, row.health_reason)
            inputs = site_inputs(row, clusters.get(row.pk), nodes[row.pk])
            verdict = health.site_health(inputs, current=current, now=by_id[row.pk].now)
            if verdict != current:
                Site.objects.filter(pk=row.pk).update(
                    health=verdict.health, health_since=verdict.since, health_reason=verdict.reason
                )
            verdicts[row.pk] = verdict
    for site_id, verdict in verdicts.items():
        site = by_id[site_id].site
        if site is not None:
            site.health, site.health_since, site.health_reason = verdict.health, verdict.since, verdict.reason
    return verdicts


@dataclass(frozen=True)
class NodesSeen:
    """What one probe learnt of a site's nodes: `observed` maps node names to what the cluster said, or is
    None when the cluster did not answer; `now` is when it was read."""

    site: Site
    observed: dict[str, NodeObservation] | None
    now: dt.datetime


def nodes_record_observations(*, seen: Sequence[NodesSeen]) -> dict[int, list[Node]]:
    """Record what probes learnt about their sites' nodes; each site's nodes (not retired), as now recorded.

    A node is matched by hostname; machines that are not in the cluster and not meant to be there
    (pre-registered, wiped, quarantined) keep what they have. One query reads the nodes of every site and,
    in the steady state (every machine seen at its probe's time, nothing else changed), one UPDATE
    records them all; any other change is an UPDATE of its node.
    """
    by_site: dict[int, list[Node]] = {entry.site.pk: [] for entry in seen}
    for node in Node.objects.filter(site_id__in=by_site).exclude(state=NodeState.RETIRED).order_by("hostname"):
        by_site[node.site_id].append(node)
    only_seen: list[Node] = []  # nodes whose one change is their last seen
    with transaction.atomic(savepoint=False):
        for entry in seen:
            for node in by_site[entry.site.pk]:
                changed = _node_changes(node, entry)
                for key, value in changed.items():
                    setattr(node, key, value)
                if set(changed) == {"last_seen_at"} and node.last_seen_at is not None:
                    only_seen.append(node)
                elif changed:
                    Node.objects.filter(pk=node.pk).update(**changed)
        if only_seen:
            Node.objects.bulk_update(only_seen, ["last_seen_at"])
    return by_site


def _node_changes(node: Node, entry: NodesSeen) -> dict[str, object]:
    """The columns of `node` that what its cluster said (or did not say) changes."""
    seen = entry.observed.get(node.hostname) if entry.observed is not None else None
    if seen is None and node.state not in _EXPECTED_IN_CLUSTER:
        return {}
    verdict = health.node_health(
        current=Health(node.health, node.health_since, node.health_reason),
        last_seen=node.last_seen_at,
        heartbeat_at=node.last_heartbeat_at,
        observed=seen,
        cluster_answered=entry.observed is not None,
        now=entry.now,
    )
    changes = {
        "health": verdict.health,
        "health_since": verdict.since,
        "health_reason": verdict.reason,
        "last_seen_at": verdict.last_seen,
    }
    return {key: value for key, value in changes.items() if getattr(node, key) != value}


# Machines the cluster is expected to list: in service, or joining it, or broken in it.
_EXPECTED_IN_CLUSTER = frozenset(
    {NodeState.JOINING, NodeState.ACTIVE, NodeState.CORDONED, NodeState.DRAINING, NodeState.BROKEN}
)


def node_heard_from(*, node: Node, now: dt.datetime) -> None:
    """A heartbeat from a machine recorded as not seen: it is alive, though its cluster has not said it is
    Ready again (the next probe will). Rare, so the common heartbeat costs nothing here."""
    if node.health != NodeHealth.NOT_SEEN:
        return
    verdict = Health(NodeHealth.NOT_READY, now, "heard from; its cluster has not reported it Ready yet")
    with transaction.atomic():
        updated = Node.objects.filter(pk=node.pk, health=NodeHealth.NOT_SEEN).update(
            health=verdict.health, health_since=verdict.since, health_reason=verdict.reason
        )
        if updated:
            node.health, node.health_since, node.health_reason = verdict.health, verdict.since, verdict.reason
            site_health_refresh(site=node.site_id, now=now)


def node_after_transition(*, node: Node, before: str, source: Source, now: dt.datetime | None = None) -> None:
    """Called by node_transition in its transaction: the node may count for its site now, or no longer.

    A node becomes active from joining only once a workflow saw it Ready in its cluster (provisioning,
    a rejoin after a wipe, a replacement), so it is recorded ready then rather than "not seen" until the
    next probe. Leaving service resolves its node-down alert (sites.alerts).
    """
    from sites import alerts  # sites.alerts records through this module

    now = now or timezone.now()
    if before == NodeState.JOINING and node.state == NodeState.ACTIVE and node.health != NodeHealth.READY:
        verdict = Health(NodeHealth.READY, now, "")
        Node.objects.filter(pk=node.pk).update(health=verdict.health, health_since=now, health_reason="")
        node.health, node.health_since, node.health_reason = verdict.health, now, ""
    alerts.node_down_resolve_if_out_of_service(node=node, source=source, now=now)
    site_health_refresh(site=node.site_id, now=now)


def site_record_sync(
    *,
    site: Site,
    head: str,
    drifted_since: dt.datetime | None,
    sync_error: str = "",
    rollout_error: str = "",
) -> Health:
    """What the drift check learnt (rollouts.drift): the repository head, since when the applied revision
    (which it records itself, as Site.last_applied_revision) differs from it (None: in sync), the GitOps
    agent's failure and the latest rollout's failure here."""
    now = timezone.now()
    with transaction.atomic():
        Site.objects.filter(pk=site.pk).update(
            repo_head_revision=head[:64],
            drifted_since=drifted_since,
            sync_error=sync_error[:500],
            rollout_error=rollout_error[:500],
        )
        return site_health_refresh(site=site.pk, now=now)
