"""The admin for support staff: pages render fast, saves go through the services, secrets never show."""

import pytest
from django.test import Client

from fleet.audit.models import AuditEvent
from sites import services
from sites.choices import NodeState
from sites.models import Node, Site
from tests.factories import NodeFactory, SiteFactory
from tests.sites.conftest import site_admin_form

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    [
        "/admin/sites/site/",
        "/admin/sites/site/?state=active&region=us-south&heartbeat=never",
        "/admin/sites/node/",
        "/admin/sites/node/?state=active&seen=stale",
        "/admin/sites/cluster/",
        "/admin/audit/auditevent/",
        "/admin/sites/site/add/",
        "/admin/sites/node/add/",
    ],
)
def test_admin_pages_render(staff: Client, path: str) -> None:
    NodeFactory()
    assert staff.get(path).status_code == 200


def test_site_list_does_not_query_per_row(staff: Client, django_assert_max_num_queries: object) -> None:
    for _ in range(25):
        NodeFactory()
    with django_assert_max_num_queries(12):  # type: ignore[operator]
        assert staff.get("/admin/sites/site/").status_code == 200


def test_site_page_shows_its_nodes_and_not_the_credentials(staff: Client) -> None:
    node = NodeFactory(hostname="tx-a")
    services.cluster_set_credentials(
        cluster=node.site.cluster, actor="t", source="test", api_url="https://k:6443", token="hidden-token"
    )

    site_page = staff.get(f"/admin/sites/site/{node.site.pk}/change/").content.decode()
    cluster_page = staff.get(f"/admin/sites/cluster/{node.site.cluster.pk}/change/").content.decode()

    assert "tx-a" in site_page
    assert "hidden-token" not in site_page
    assert "hidden-token" not in cluster_page
    assert "gAAAA" not in cluster_page


def test_adding_a_site_in_the_admin_goes_through_the_service(staff: Client) -> None:
    response = staff.post(
        "/admin/sites/site/add/",
        site_admin_form(code="CA-0101", name="Fresno", region="us-west", timezone="America/Los_Angeles"),
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    site = Site.objects.get(code="CA-0101")
    assert site.cluster is not None
    assert AuditEvent.objects.filter(verb="create", source="admin", object_id=str(site.pk)).exists()


def test_an_illegal_state_change_in_the_admin_is_shown_on_the_form(staff: Client) -> None:
    node = NodeFactory(state=NodeState.RETIRED)

    response = staff.post(
        f"/admin/sites/node/{node.pk}/change/",
        {
            "site": node.site.pk,
            "hostname": node.hostname,
            "mac": node.mac,
            "role": node.role,
            "hardware_model": "",
            "state": "active",
            "reason": "",
        },
    )

    assert response.status_code == 200
    assert "retired; it cannot become active" in response.content.decode()
    assert Node.objects.get(pk=node.pk).state == NodeState.RETIRED


def test_probe_action_is_audited(staff: Client) -> None:
    site = SiteFactory()

    response = staff.post("/admin/sites/site/", {"action": "probe_clusters", "_selected_action": [site.pk]})

    assert response.status_code == 302
    assert AuditEvent.objects.filter(verb="probe", source="admin", object_id=str(site.pk)).exists()
