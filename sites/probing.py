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
    """Probe each of the sites one after the other (their clusters read in one query); how many."""
    clusters = Cluster.objects.select_related("site").filter(site_id__in=site_ids).order_by("site_id")
    probed = 0
    for cluster in clusters:
        _probe(cluster)
        probed += 1
    return probed


def site_probe(*, site: Site) -> Cluster:
    """Read the site's cluster now and record reachability, nodes, the site's health and its alerts."""
    return _probe(Cluster.objects.select_related("site").get(site=site))


def _probe(cluster: Cluster) -> Cluster:
    site = cluster.site
    now = timezone.now()
    observed: dict[str, NodeObservation] | None = None
    outcome: dict[str, Any] = {"reachability": ClusterReachability.REACHABLE}
    try:  # the I/O, before any transaction
        adapter = SiteCluster.for_cluster(cluster)
        outcome["k3s_version"] = adapter.version()
        observed = _observations(adapter, adapter.nodes(), now)
    except ClusterError as exc:
        outcome = {"reachability": _reachability_of(exc), "problem": cluster_problem(exc, api_url=cluster.api_url)}
    # Then everything it learnt in one transaction (one commit: what a probe costs is mostly commits).
    with transaction.atomic():
        cluster = cluster_record_probe(cluster=cluster, at=now, **outcome)
        recorded = health_records.nodes_record_observations(site=site, observed=observed, now=now)
        health_records.site_health_refresh(site=site, now=now, cluster=cluster)
        alerts.node_down_alerts_sync(site=site, nodes=recorded, cluster_answered=observed is not None, now=now)
    return cluster


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


def cluster_record_probe(
    *,
    cluster: Cluster,
    reachability: str,
    k3s_version: str = "",
    problem: Problem | None = None,
    at: dt.datetime | None = None,
) -> Cluster:
    """Record the outcome of a probe; not audited (it is an observation).

    A failure is kept as a sentence for people ("cannot reach the cluster at 10.2.3.4:6443 (connection
    refused) since 14:02") in `last_error` and the raw error in `last_error_detail`; `failing_since` is
    the first failed probe since the cluster last answered.
    """
    at = at or timezone.now()
    fields: dict[str, Any] = {"reachability": reachability, "last_probe_at": at}
    if reachability == ClusterReachability.REACHABLE:
        fields.update(k3s_version=k3s_version, last_contact_at=at, failing_since=None)
        fields.update(last_error="", last_error_detail="")
    else:
        since = cluster.failing_since or at
        fields.update(failing_since=since)
        if problem is not None:
            fields.update(last_error=problem.sentence(since, at)[:2000], last_error_detail=problem.detail)
    Cluster.objects.filter(pk=cluster.pk).update(**fields, updated_at=at)
    for key, value in {**fields, "updated_at": at}.items():
        setattr(cluster, key, value)
    return cluster


def cluster_record_version(*, site_id: int, k3s_version: str, at: dt.datetime | None = None) -> None:
    """Record the K3s version a site's API was just seen to run, outside a probe (a verified K3s upgrade:
    rollouts.workflows.upgrade_checks); not audited (an observation), as a probe's."""
    at = at or timezone.now()
    Cluster.objects.filter(site_id=site_id).update(k3s_version=k3s_version[:64], last_contact_at=at, updated_at=at)
