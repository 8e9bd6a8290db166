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

from django.db import transaction
from django.utils import timezone

from fleet.audit.choices import Source
from sites import health
from sites.choices import NodeHealth, NodeState
from sites.health import Health, NodeObservation, NodeSummary, SiteInputs
from sites.models import Cluster, Node, Site


def site_inputs(site: Site, cluster: Cluster | None) -> SiteInputs:
    """What the site's health is decided from, as recorded now: one query for its nodes."""
    nodes = Node.objects.filter(site=site).exclude(state=NodeState.RETIRED)
    return SiteInputs(
        state=site.state,
        reachability=cluster.reachability if cluster else "unknown",
        has_credentials=bool(cluster and cluster.has_credentials),
        cluster_error=cluster.last_error if cluster else "",
        failing_since=cluster.failing_since if cluster else None,
        nodes=tuple(NodeSummary(*row) for row in nodes.values_list("hostname", "state", "health", "health_since")),
        applied_revision=site.last_applied_revision,
        head_revision=site.repo_head_revision,
        drifted_since=site.drifted_since,
        sync_error=site.sync_error,
        rollout_error=site.rollout_error,
    )


def site_health_refresh(*, site: Site | int, now: dt.datetime | None = None, cluster: Cluster | None = None) -> Health:
    """Decide the site's health again from what is recorded, and write it if it changed. `cluster`, when
    given, is the site's cluster as its only writer (the probe) has just recorded it."""
    now = now or timezone.now()
    site_id = site if isinstance(site, int) else site.pk
    with transaction.atomic(savepoint=False):  # within a caller's transaction, no savepoint needed
        locked = Site.objects.select_for_update().get(pk=site_id)
        if cluster is None or cluster.site_id != site_id:
            cluster = Cluster.objects.filter(site_id=site_id).first()
        current = Health(locked.health, locked.health_since, locked.health_reason)
        verdict = health.site_health(site_inputs(locked, cluster), current=current, now=now)
        if verdict != current:
            Site.objects.filter(pk=site_id).update(
                health=verdict.health, health_since=verdict.since, health_reason=verdict.reason
            )
    if not isinstance(site, int):
        site.health, site.health_since, site.health_reason = verdict.health, verdict.since, verdict.reason
    return verdict


def nodes_record_observations(
    *, site: Site, observed: dict[str, NodeObservation] | None, now: dt.datetime | None = None
) -> list[Node]:
    """Record what the probe learnt about the site's nodes and return them (not retired), as now recorded.

    `observed` maps node names to what the cluster said, or is None when the cluster did not answer.
    A node is matched by hostname; machines that are not in the cluster and not meant to be there
    (pre-registered, wiped, quarantined) keep what they have.
    """
    now = now or timezone.now()
    nodes = list(Node.objects.filter(site=site).exclude(state=NodeState.RETIRED).order_by("hostname"))
    only_seen: dict[dt.datetime, list[Node]] = {}  # nodes whose one change is their last seen, by that time
    with transaction.atomic(savepoint=False):
        for node in nodes:
            seen = observed.get(node.hostname) if observed is not None else None
            if seen is None and node.state not in _EXPECTED_IN_CLUSTER:
                continue
            verdict = health.node_health(
                current=Health(node.health, node.health_since, node.health_reason),
                last_seen=node.last_seen_at,
                heartbeat_at=node.last_heartbeat_at,
                observed=seen,
                cluster_answered=observed is not None,
                now=now,
            )
            changes = {
                "health": verdict.health,
                "health_since": verdict.since,
                "health_reason": verdict.reason,
                "last_seen_at": verdict.last_seen,
            }
            changed = {key: value for key, value in changes.items() if getattr(node, key) != value}
            for key, value in changed.items():
                setattr(node, key, value)
            if set(changed) == {"last_seen_at"} and verdict.last_seen is not None:
                only_seen.setdefault(verdict.last_seen, []).append(node)
            elif changed:
                Node.objects.filter(pk=node.pk).update(**changed)
        # The steady state of a healthy site: every machine seen at the probe's time, one UPDATE for all.
        for at, same in only_seen.items():
            Node.objects.filter(pk__in=[node.pk for node in same]).update(last_seen_at=at)
    return nodes


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
