"""The probe: what a site's cluster says about itself and its machines, recorded.

Beat sends every site, in chunks of FLEET_PROBE_CHUNK, to `sites.probe_sites` every FLEET_PROBE_INTERVAL
(people ask for one site's probe with `sites.probe`).
A probe costs a healthy site two small GETs (`/version`, and one list of its Node objects, whose Ready
condition says each machine's health); a site with a node that is not Ready costs a third, one list of
the node Leases in `kube-node-lease`, to know when each of those kubelets was last heard from. Never a
call per node. It then records:

- the cluster's reachability, version and time of contact, or the failure as a sentence for people
  with the raw error kept behind it (sites.messages) and since when it has been failing;
- each node's health and last seen (sites.health_records; imported machines, which never heartbeat,
  get their last seen here);
- the site's health, and the node-down alerts due or resolved (sites.alerts).
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from sites import alerts, health_records
from sites.choices import ClusterReachability
from sites.clusters import ClusterError, ClusterNotConfigured, ClusterRefused, NodeInfo, SiteCluster
from sites.health import NodeObservation
from sites.messages import Problem, cluster_problem
from sites.models import Cluster, Site


def sites_probe(site_ids: list[int]) -> int:
    """Probe each of the sites (their clusters read in one query), then record what was learnt in one
    transaction; how many. Should the task's time limit cut the reads short, what was read is recorded."""
    clusters = Cluster.objects.select_related("site").filter(site_id__in=site_ids).order_by("site_id")
    reads: list[_Read] = []
    try:
        for cluster in clusters:
            reads.append(_read(cluster))
    finally:
        _record(reads)
    return len(reads)


def site_probe(*, site: Site) -> Cluster:
    """Read the site's cluster now and record reachability, nodes, the site's health and its alerts."""
    read = _read(Cluster.objects.select_related("site").get(site=site))
    _record([read])
    return read.cluster


@dataclass
class _Read:
    """What one site's cluster said (or the failure), before anything is recorded."""

    cluster: Cluster
    now: dt.datetime
    outcome: dict[str, Any]
    observed: dict[str, NodeObservation] | None


def _read(cluster: Cluster) -> _Read:
    """The I/O of a probe, outside any transaction: the version and the Node list (and, for a node that
    is not Ready, the Leases)."""
    now = timezone.now()
    try:
        adapter = SiteCluster.for_cluster(cluster)
        version = adapter.version()
        observed = _observations(adapter, adapter.nodes(), now)
    except ClusterError as exc:
        problem = cluster_problem(exc, api_url=cluster.api_url)
        return _Read(cluster, now, {"reachability": _reachability_of(exc), "problem": problem}, None)
    return _Read(cluster, now, {"reachability": ClusterReachability.REACHABLE, "k3s_version": version}, observed)


def _record(reads: list[_Read]) -> None:
    """Everything the probes learnt, in one transaction (what a probe costs is mostly its queries and its
    commit): each cluster's outcome, each site's nodes, each site's health, the node-down alerts."""
    if not reads:
        return
    with transaction.atomic():
        clusters_record_probes([(read.cluster, read.now, read.outcome) for read in reads])
        seen = [health_records.NodesSeen(read.cluster.site, read.observed, read.now) for read in reads]
        recorded = health_records.nodes_record_observations(seen=seen)
        health_records.sites_health_refresh(
            checks=[
                health_records.SiteCheck(read.cluster.site, read.cluster.site_id, read.now, read.cluster)
                for read in reads
            ]
        )
        alerts.node_down_alerts_sync(
            probed=[
                (read.cluster.site, recorded[read.cluster.site_id], read.observed is not None, read.now)
                for read in reads
            ]
        )


def _reachability_of(exc: ClusterError) -> str:
    if isinstance(exc, ClusterNotConfigured):
        return ClusterReachability.UNKNOWN
    if isinstance(exc, ClusterRefused):
        return ClusterReachability.UNAUTHORIZED
    return ClusterReachability.UNREACHABLE


def _observations(adapter: SiteCluster, nodes: list[NodeInfo], now: dt.datetime) -> dict[str, NodeObservation]:
    """What each Node object says. A Ready node was seen now: the node controller would have marked it
    Unknown 40 s after its lease stopped. For the others, the Leases say when they were last heard from;
    reading them is best effort (a token that may not list Leases still gets the Ready conditions)."""
    leases: dict[str, dt.datetime] = {}
    if any(node.ready is not True for node in nodes):
        try:
            leases = adapter.node_leases()
        except ClusterError:
            leases = {}
    observed = {}
    for node in nodes:
        heard = [t for t in (leases.get(node.name), node.heartbeat_at) if t is not None]
        observed[node.name] = NodeObservation(
            ready=node.ready,
            ready_since=node.ready_since,
            seen_at=now if node.ready is True else (max(heard) if heard else None),
            reason=node.ready_reason,
            message=node.ready_message,
        )
    return observed


def clusters_record_probes(outcomes: Sequence[tuple[Cluster, dt.datetime, dict[str, Any]]]) -> None:
    """Record the outcome of each probe (`reachability`, and `k3s_version` or `problem`, at its time); not
    audited (an observation). One UPDATE for the clusters whose outcome writes the same columns.

    A failure is kept as a sentence for people ("cannot reach the cluster at 10.2.3.4:6443 (connection
    refused) since 14:02") in `last_error` and the raw error in `last_error_detail`; `failing_since` is
    the first failed probe since the cluster last answered.
    """
    by_columns: dict[tuple[str, ...], list[Cluster]] = defaultdict(list)
    for cluster, at, outcome in outcomes:
        fields = _probe_fields(cluster, at=at, **outcome)
        for key, value in fields.items():
            setattr(cluster, key, value)
        by_columns[tuple(sorted(fields))].append(cluster)
    for columns, clusters in by_columns.items():
        Cluster.objects.bulk_update(clusters, list(columns))


def _probe_fields(
    cluster: Cluster, *, at: dt.datetime, reachability: str, k3s_version: str = "", problem: Problem | None = None
) -> dict[str, Any]:
    fields: dict[str, Any] = {"reachability": reachability, "last_probe_at": at, "updated_at": at}
    if reachability == ClusterReachability.REACHABLE:
        fields.update(k3s_version=k3s_version, last_contact_at=at, failing_since=None)
        fields.update(last_error="", last_error_detail="")
    else:
        since = cluster.failing_since or at
        fields.update(failing_since=since)
        if problem is not None:
            fields.update(last_error=problem.sentence(since, at)[:2000], last_error_detail=problem.detail)
    return fields


def cluster_record_version(*, site_id: int, k3s_version: str, at: dt.datetime | None = None) -> None:
    """Record the K3s version a site's API was just seen to run, outside a probe (a verified K3s upgrade:
    rollouts.workflows.upgrade_checks); not audited (an observation), as a probe's."""
    at = at or timezone.now()
    Cluster.objects.filter(site_id=site_id).update(k3s_version=k3s_version[:64], last_contact_at=at, updated_at=at)
