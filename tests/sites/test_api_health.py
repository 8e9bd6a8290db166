"""Health in the API: the read-only health fields of sites and nodes, their filters and ordering, the
`alerts/` list, and what a page of each costs (the same number of queries for 3 rows or 40)."""

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from sites.choices import AlertKind, NodeHealth, SiteHealth
from sites.models import Alert, Node, Site
from tests.factories import NodeFactory, SiteFactory, UserFactory

pytestmark = pytest.mark.django_db
NOW = timezone.now()


def client(*perms: str) -> APIClient:
    api = APIClient()
    api.force_authenticate(UserFactory(perms=list(perms)))
    return api


def sites_with_health(*healths: str) -> list[Site]:
    return [
        Site.objects.get(
            pk=SiteFactory(health=value, health_since=NOW - dt.timedelta(hours=i), health_reason=f"why {i}").pk
        )
        for i, value in enumerate(healths)
    ]


def codes(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["code"] for row in response.json()["results"]]


def test_sites_show_their_health_and_filter_on_it(admin_api: APIClient) -> None:
    degraded, unreachable, healthy = sites_with_health(SiteHealth.DEGRADED, SiteHealth.UNREACHABLE, SiteHealth.HEALTHY)

    row = admin_api.get(f"/api/v1/sites/{degraded.code}/").json()
    both = codes(admin_api.get("/api/v1/sites/", {"health": ["degraded", "unreachable"]}))
    recent = codes(
        admin_api.get("/api/v1/sites/", {"health_since_after": (NOW - dt.timedelta(minutes=30)).isoformat()})
    )
    older = codes(
        admin_api.get("/api/v1/sites/", {"health_since_before": (NOW - dt.timedelta(minutes=30)).isoformat()})
    )

    assert (row["health"], row["health_reason"]) == ("degraded", "why 0")
    assert row["health_since"] is not None and "drifted_since" in row and "last_error_detail" in row["cluster"]
    assert sorted(both) == sorted([degraded.code, unreachable.code])
    assert recent == [degraded.code]
    assert sorted(older) == sorted([unreachable.code, healthy.code])


def test_an_unknown_health_is_a_400_naming_the_field(admin_api: APIClient) -> None:
    response = admin_api.get("/api/v1/sites/", {"health": "on-fire"})
    nodes = admin_api.get("/api/v1/nodes/", {"health": "healthy"})  # a site's value, not a node's

    assert response.status_code == 400 and "health" in response.json()
    assert nodes.status_code == 400 and "health" in nodes.json()


def test_health_is_read_only_through_the_api(admin_api: APIClient) -> None:
    (site,) = sites_with_health(SiteHealth.DEGRADED)

    response = admin_api.patch(f"/api/v1/sites/{site.code}/", {"health": "healthy", "name": "renamed"}, format="json")

    assert response.status_code == 200, response.content
    site.refresh_from_db()
    assert (site.health, site.name) == (SiteHealth.DEGRADED, "renamed")


def test_sites_order_by_health_with_the_code_breaking_ties_across_pages(admin_api: APIClient) -> None:
    sites = sites_with_health(*[SiteHealth.HEALTHY, SiteHealth.DEGRADED] * 3)
    expected = sorted(sites, key=lambda s: (s.health, s.code))

    seen: list[str] = []
    url: str | None = "/api/v1/sites/?ordering=health&page_size=2"
    while url:
        page = admin_api.get(url).json()
        seen += [row["code"] for row in page["results"]]
        url = page["next"]
    descending = codes(admin_api.get("/api/v1/sites/", {"ordering": "-health"}))

    assert seen == [s.code for s in expected]
    assert [Site.objects.get(code=c).health for c in descending[:3]] == [SiteHealth.HEALTHY] * 3


def test_nodes_show_health_and_filter_and_order_on_it(admin_api: APIClient) -> None:
    site = SiteFactory()
    ready = NodeFactory(site=site, health=NodeHealth.READY, health_since=NOW)
    down = NodeFactory(site=site, health=NodeHealth.NOT_READY, health_since=NOW - dt.timedelta(hours=2))
    unseen = NodeFactory(site=site, health=NodeHealth.NOT_SEEN, health_since=None)

    listed = admin_api.get("/api/v1/nodes/", {"health": ["not_ready", "not_seen"]}).json()["results"]
    old = admin_api.get("/api/v1/nodes/", {"health_since_before": (NOW - dt.timedelta(hours=1)).isoformat()})
    ordered = admin_api.get("/api/v1/nodes/", {"ordering": "health"}).json()["results"]

    assert sorted(row["id"] for row in listed) == sorted([down.pk, unseen.pk])
    assert [row["id"] for row in old.json()["results"]] == [down.pk]
    assert [row["health"] for row in ordered] == ["not_ready", "not_seen", "ready"]
    assert {row["id"]: row["health_since"] for row in ordered}[unseen.pk] is None
    assert all("last_heartbeat_at" in row and "health_reason" in row for row in ordered)
    assert ready.pk in [row["id"] for row in ordered]


def _queries(api: APIClient, url: str, params: dict[str, Any]) -> int:
    with CaptureQueriesContext(connection) as context:
        response = api.get(url, params)
    assert response.status_code == 200, response.content
    return len(context)


def test_site_and_node_lists_with_health_filters_cost_the_same_for_3_rows_or_40(admin_api: APIClient) -> None:
    def populate(count: int) -> None:
        for site in sites_with_health(*[SiteHealth.DEGRADED] * count):
            NodeFactory(site=site, health=NodeHealth.NOT_READY, health_since=NOW)

    populate(3)
    few_sites = _queries(admin_api, "/api/v1/sites/", {"health": "degraded", "ordering": "health"})
    few_nodes = _queries(admin_api, "/api/v1/nodes/", {"health": "not_ready", "ordering": "health"})
    populate(37)
    many_sites = _queries(admin_api, "/api/v1/sites/", {"health": "degraded", "ordering": "health"})
    many_nodes = _queries(admin_api, "/api/v1/nodes/", {"health": "not_ready", "ordering": "health"})

    assert few_sites == many_sites <= 6
    assert few_nodes == many_nodes <= 6


# --- alerts ------------------------------------------------------------------------------------------


def alert(site: Site, node: Node | None, *, resolved: bool = False) -> Alert:
    return Alert.objects.create(
        kind=AlertKind.NODE_DOWN,
        site=site,
        node=node,
        message=f"node {node.hostname if node else '?'} is not seen",
        opened_at=NOW,
        resolved_at=NOW if resolved else None,
        resolution="node is ready again" if resolved else "",
    )


def test_alerts_list_open_ones_by_site_with_the_replace_action(admin_api: APIClient) -> None:
    here, there = SiteFactory(), SiteFactory()
    node = NodeFactory(site=here)
    open_here = alert(here, node)
    alert(here, NodeFactory(site=here), resolved=True)
    alert(there, NodeFactory(site=there))

    response = admin_api.get("/api/v1/alerts/", {"site": here.code, "open": "true"})

    assert response.status_code == 200, response.content
    (row,) = response.json()["results"]
    assert row["id"] == open_here.pk and row["site"] == here.code
    assert (row["node"], row["node_hostname"], row["open"], row["kind"]) == (node.pk, node.hostname, True, "node_down")
    assert row["actions"] == {"replace": f"/api/v1/nodes/{node.pk}/replace/"}
    resolved = admin_api.get("/api/v1/alerts/", {"open": "false"}).json()["results"]
    assert [(r["open"], r["actions"], r["resolution"]) for r in resolved] == [(False, {}, "node is ready again")]


def test_alerts_need_the_view_alert_permission_and_are_read_only(admin_api: APIClient) -> None:
    row = alert(SiteFactory(), None)

    assert client("sites.view_site").get("/api/v1/alerts/").status_code == 403
    assert client("sites.view_alert").get("/api/v1/alerts/").status_code == 200
    assert admin_api.post("/api/v1/alerts/", {"kind": "node_down"}, format="json").status_code == 405
    assert admin_api.delete(f"/api/v1/alerts/{row.pk}/").status_code == 405


def test_the_alert_list_costs_the_same_for_2_alerts_or_30(admin_api: APIClient) -> None:
    def populate(count: int) -> None:
        for _ in range(count):
            site = SiteFactory()
            alert(site, NodeFactory(site=site))

    populate(2)
    few = _queries(admin_api, "/api/v1/alerts/", {"open": "true"})
    populate(28)
    many = _queries(admin_api, "/api/v1/alerts/", {"open": "true"})

    assert few == many <= 4
