"""The probe's reading of nodes and what it records, against a small K3s-like API server started by the
test (it lists Nodes and node Leases as the API server does, and counts the requests it gets): the cost
per site (one Node list; the Leases only when a node is not Ready), each node's health and last seen,
the site's health, and the node-down alerts it opens and resolves."""

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone

from fleet.audit.models import AuditEvent
from sites import services
from sites.choices import AlertKind, ClusterReachability, NodeHealth, NodeState, SiteHealth
from sites.models import Alert, Node, Site
from tests.support.http import JsonHandler, serving

pytestmark = pytest.mark.django_db
TOKEN = "s3cret-token"
VERSION = {
    "major": "1", "minor": "31", "gitVersion": "v1.31.4+k3s1", "gitCommit": "a562d090b0ea1a2a5a6ec3ba1e4b1fe2a41ae8a4",
    "gitTreeState": "clean", "buildDate": "2024-12-18T22:34:11Z", "goVersion": "go1.22.9", "compiler": "gc",
    "platform": "linux/amd64",
}  # fmt: skip


def iso(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_object(name: str, status: str, since: dt.datetime, heartbeat: dt.datetime, reason: str = "") -> dict[str, Any]:
    ready = {
        "type": "Ready",
        "status": status,
        "reason": reason or {"True": "KubeletReady", "False": "KubeletNotReady"}.get(status, "NodeStatusUnknown"),
        "message": "kubelet is posting ready status" if status == "True" else "Kubelet stopped posting node status.",
        "lastTransitionTime": iso(since),
        "lastHeartbeatTime": iso(heartbeat),
    }
    return {"metadata": {"name": name}, "spec": {}, "status": {"conditions": [ready]}}


class _K3s(JsonHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        server: Any = self.server
        path = self.path.split("?")[0].rstrip("/")
        server.requests.append(path)
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._answer(401, {"kind": "Status", "code": 401, "message": "Unauthorized"})
        elif path == "/version":
            self._answer(200, VERSION)
        elif path == "/api/v1/nodes":
            self._answer(200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": server.nodes})
        elif path == "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases":
            items = [
                {"metadata": {"name": name, "namespace": "kube-node-lease"}, "spec": {"renewTime": iso(at)}}
                for name, at in server.leases.items()
            ]
            self._answer(200, {"kind": "LeaseList", "apiVersion": "coordination.k8s.io/v1", "items": items})
        else:
            self._answer(404, {"kind": "Status", "code": 404})


@pytest.fixture
def k3s() -> Iterator[Any]:
    with serving(_K3s) as server:
        server.nodes, server.leases, server.requests = [], {}, []
        yield server


@pytest.fixture
def site(k3s: Any) -> Site:
    site = services.site_create(
        actor="test", source="test", code="TX-0412", name="Austin 12", region="us-south", timezone="UTC", state="active"
    )
    services.cluster_set_credentials(cluster=site.cluster, actor="t", source="test", api_url=k3s.url, token=TOKEN)
    for hostname in ("nuc-1", "nuc-2"):
        services.node_create(
            actor="test", source="test", serial=f"SN-{hostname}", site=site, hostname=hostname, mac="", state="active"
        )
    return Site.objects.get(pk=site.pk)


def probe(site: Site) -> Site:
    services.site_probe(site=site)
    return Site.objects.get(pk=site.pk)


def nodes(site: Site) -> dict[str, Node]:
    return {node.hostname: node for node in Node.objects.filter(site=site)}


def test_a_healthy_site_costs_a_version_and_one_node_list_and_its_imported_nodes_get_last_seen(
    k3s: Any, site: Site
) -> None:
    earlier = timezone.now() - dt.timedelta(hours=3)
    k3s.nodes = [node_object(n, "True", earlier, earlier) for n in ("nuc-1", "nuc-2")]
    assert all(n.last_seen_at is None for n in nodes(site).values())  # imported machines never heartbeat
    assert site.health == SiteHealth.UNREACHABLE and site.health_reason == "the cluster has not been probed yet"

    before = timezone.now()
    site = probe(site)

    assert k3s.requests == ["/version", "/api/v1/nodes"]  # one list for every node, no Lease list
    assert (site.health, site.health_reason) == (SiteHealth.HEALTHY, "")
    for node in nodes(site).values():
        assert node.health == NodeHealth.READY and node.health_since == earlier.replace(microsecond=0)
        assert node.last_seen_at is not None and node.last_seen_at >= before  # from the probe


def test_a_dead_node_is_not_seen_since_its_lease_the_site_degraded_and_an_alert_opens_past_down_after(
    k3s: Any, site: Site, settings: Any
) -> None:
    settings.FLEET_NODE_DOWN_AFTER = 300
    now = timezone.now()
    died = now - dt.timedelta(minutes=3)
    k3s.nodes = [node_object("nuc-1", "True", now, now), node_object("nuc-2", "Unknown", died, died)]
    k3s.leases = {"nuc-1": now, "nuc-2": died}

    site = probe(site)

    assert k3s.requests[-1] == "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
    assert len(k3s.requests) == 3
    dead = nodes(site)["nuc-2"]
    assert (dead.health, dead.health_since, dead.last_seen_at) == (NodeHealth.NOT_SEEN, died.replace(microsecond=0),
                                                                   died.replace(microsecond=0))  # fmt: skip
    assert site.health == SiteHealth.DEGRADED
    assert site.health_reason.startswith("node nuc-2 not seen since ")
    assert not Alert.objects.exists()  # three minutes: not yet down for FLEET_NODE_DOWN_AFTER

    # Later: down for longer than FLEET_NODE_DOWN_AFTER
    settings.FLEET_NODE_DOWN_AFTER = 120
    probe(site)
    probe(site)  # a second probe opens no second alert

    alert = Alert.objects.get()
    assert (alert.kind, alert.site_id, alert.node_id, alert.resolved_at) == (
        AlertKind.NODE_DOWN,
        site.pk,
        dead.pk,
        None,
    )
    assert alert.message.startswith("node nuc-2 at TX-0412 is not seen since ")
    assert alert.message.endswith("if it is dead, replace it")
    assert AuditEvent.objects.filter(verb="alert_open", object_id=str(alert.pk), actor_repr="system:health").exists()

    # It comes back: Ready again, the alert resolves itself and the site is healthy again
    back = timezone.now()
    k3s.nodes[1] = node_object("nuc-2", "True", back, back)
    site = probe(site)

    alert.refresh_from_db()
    assert alert.resolved_at is not None and alert.resolution == "node nuc-2 is ready again"
    assert (site.health, nodes(site)["nuc-2"].health) == (SiteHealth.HEALTHY, NodeHealth.READY)
    assert AuditEvent.objects.filter(verb="alert_resolve", object_id=str(alert.pk)).exists()


def test_a_node_reporting_not_ready_names_the_kubelets_reason(k3s: Any, site: Site) -> None:
    now = timezone.now()
    k3s.nodes = [
        node_object("nuc-1", "True", now, now),
        node_object("nuc-2", "False", now - dt.timedelta(minutes=1), now, reason="KubeletNotReady"),
    ]

    site = probe(site)

    node = nodes(site)["nuc-2"]
    assert (node.health, node.health_reason) == (
        NodeHealth.NOT_READY,
        "kubelet: KubeletNotReady: Kubelet stopped posting node status.",
    )
    assert node.last_seen_at == now.replace(microsecond=0)  # the condition's heartbeat: it has no Lease here
    assert site.health == SiteHealth.DEGRADED and "node nuc-2 not ready since" in site.health_reason


def test_a_replaced_node_resolves_its_alert_and_counts_as_broken_not_down(k3s: Any, site: Site, settings: Any) -> None:
    settings.FLEET_NODE_DOWN_AFTER = 0
    now = timezone.now()
    k3s.nodes = [node_object("nuc-1", "True", now, now), node_object("nuc-2", "Unknown", now, now)]
    probe(site)
    alert = Alert.objects.get()
    dead = nodes(site)["nuc-2"]

    # The replace workflow's first step marks the machine broken
    services.node_transition(node=dead, to=NodeState.BROKEN, actor="system:workflow", source="workflow", reason="dead")

    alert.refresh_from_db()
    assert alert.resolution == "node nuc-2 is broken"
    site.refresh_from_db()
    assert (site.health, site.health_reason) == (SiteHealth.DEGRADED, "node nuc-2 broken")
    probe(site)  # a broken node raises no new alert
    assert Alert.objects.filter(resolved_at__isnull=True).count() == 0


def test_an_unreachable_site_opens_no_alert_and_says_since_when(k3s: Any, site: Site, settings: Any) -> None:
    settings.FLEET_NODE_DOWN_AFTER = 0
    now = timezone.now()
    k3s.nodes = [node_object(n, "True", now, now) for n in ("nuc-1", "nuc-2")]
    probe(site)
    Node.objects.filter(site=site).update(last_seen_at=now - dt.timedelta(hours=1))  # long silent
    k3s.shutdown()
    k3s.server_close()

    site = probe(site)
    site.cluster.refresh_from_db()

    assert site.health == SiteHealth.UNREACHABLE
    assert site.health_reason == site.cluster.last_error
    assert site.health_reason.startswith(f"cannot reach the cluster at {k3s.url[7:]} (connection refused) since ")
    assert site.health_since == site.cluster.failing_since
    assert site.cluster.reachability == ClusterReachability.UNREACHABLE
    assert all(n.health == NodeHealth.NOT_SEEN for n in nodes(site).values())  # silent for an hour
    assert not Alert.objects.exists()  # the network or the site, not two dead machines

    failing_since = site.cluster.failing_since
    site = probe(site)
    assert site.health_since == failing_since  # still since the first failure


def test_a_chunk_of_sites_is_recorded_in_as_many_queries_as_one_site(
    k3s: Any, site: Site, django_assert_num_queries: Any
) -> None:
    """The beat probes sites in chunks: the reads come first, then one transaction records every site's
    cluster, nodes, health and alerts, so the queries do not grow with the chunk (the steady state of an
    idle fleet, what keeps its cost low)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from sites.probing import sites_probe

    now = timezone.now()
    k3s.nodes = [node_object(name, "True", now, now) for name in ("nuc-1", "nuc-2")]
    others = []
    for number in range(3):
        other = services.site_create(
            actor="t", source="test", code=f"TX-050{number}", name="Austin", region="r", timezone="UTC", state="active"
        )
        services.cluster_set_credentials(cluster=other.cluster, actor="t", source="test", api_url=k3s.url, token=TOKEN)
        for hostname in ("nuc-1", "nuc-2"):
            services.node_create(
                actor="t", source="test", serial=f"SN-{other.code}-{hostname}", site=other, hostname=hostname, mac=""
            )
            Node.objects.filter(site=other, hostname=hostname).update(state=NodeState.ACTIVE)
        others.append(other)
    ids = [site.pk, *(other.pk for other in others)]
    sites_probe(ids)  # the first round records what changed (health, last seen)

    with CaptureQueriesContext(connection) as one:
        assert sites_probe(ids[:1]) == 1
    with django_assert_num_queries(len(one.captured_queries)):
        assert sites_probe(ids) == len(ids)

    assert set(Site.objects.filter(pk__in=ids).values_list("health", flat=True)) == {SiteHealth.HEALTHY}
    seen = Node.objects.filter(site_id__in=ids).values_list("last_seen_at", flat=True)
    assert all(at is not None and at >= now for at in seen)
    assert len(one.captured_queries) <= 10
