"""Health in the admin: site and node lists show and filter health, alerts are listed read-only, and a
node-down alert's Replace link opens the node's Replace confirmation (same permission, same service)."""

import pytest
from django.test import Client
from django.utils import timezone

from fleet.workflows.models import WorkflowRun
from sites.choices import AlertKind, NodeHealth, NodeState, SiteHealth
from sites.models import Alert, Node
from tests.factories import NodeFactory, SiteFactory, UserFactory

pytestmark = pytest.mark.django_db


def down_alert(node: Node) -> Alert:
    return Alert.objects.create(
        kind=AlertKind.NODE_DOWN, site=node.site, node=node, message=f"node {node.hostname} is not seen",
        opened_at=timezone.now(),
    )  # fmt: skip


def test_site_and_node_lists_show_health_and_filter_on_it(staff: Client) -> None:
    sick = SiteFactory(health=SiteHealth.DEGRADED, health_since=timezone.now(), health_reason="node nuc-2 not seen")
    SiteFactory(code="TX-9999", health=SiteHealth.HEALTHY, health_since=timezone.now())
    NodeFactory(site=sick, hostname="nuc-2", health=NodeHealth.NOT_SEEN, health_since=timezone.now())

    sites = staff.get("/admin/sites/site/", {"health__exact": "degraded"}).content.decode()
    nodes = staff.get("/admin/sites/node/", {"health__exact": "not_seen"}).content.decode()
    site_page = staff.get(f"/admin/sites/site/{sick.pk}/change/").content.decode()

    assert str(sick.code) in sites and "TX-9999" not in sites
    assert "node nuc-2 not seen" in sites and ">Degraded<" in sites
    assert "nuc-2" in nodes and ">Not seen<" in nodes
    assert ">Not seen<" in site_page  # the site's nodes with their health


def test_the_alert_list_is_read_only_and_links_an_open_node_down_alert_to_replace(staff: Client) -> None:
    node = NodeFactory(hostname="nuc-2")
    alert = down_alert(node)

    page = staff.get("/admin/sites/alert/", {"open": "yes"}).content.decode()

    assert f"/admin/sites/node/{node.pk}/replace/" in page and "node nuc-2 is not seen" in page
    assert staff.get("/admin/sites/alert/add/").status_code == 403
    assert staff.post(f"/admin/sites/alert/{alert.pk}/delete/").status_code == 403
    change = staff.post(f"/admin/sites/alert/{alert.pk}/change/", {"message": "edited"})
    alert.refresh_from_db()
    assert change.status_code == 403 or alert.message == "node nuc-2 is not seen"
    assert alert.message == "node nuc-2 is not seen"


def test_the_replace_link_asks_the_replace_questions_then_starts_the_workflow(staff: Client, quiet: None) -> None:
    node = NodeFactory(hostname="nuc-2")
    down_alert(node)
    url = f"/admin/sites/node/{node.pk}/replace/"

    form = staff.get(url)
    assert form.status_code == 200 and "The machine is thrown away" in form.content.decode()

    refused = staff.post(url, {"confirm": "not-the-hostname", "reason": "dead", "replacement_serial": "G6X1",
                               "replacement_mac": "94:c6:91:dd:00:09"})  # fmt: skip
    assert refused.status_code == 200 and WorkflowRun.objects.count() == 0
    assert "type the node&#x27;s hostname (nuc-2) to confirm" in refused.content.decode()

    done = staff.post(url, {"confirm": "nuc-2", "reason": "dead", "replacement_serial": "G6X1",
                            "replacement_mac": "94:c6:91:dd:00:09", "shipment_ref": "UPS 1Z"})  # fmt: skip
    assert done.status_code == 302 and done["Location"] == f"/admin/sites/node/{node.pk}/change/"
    run = WorkflowRun.objects.get()
    assert (run.kind, run.context["shipment_ref"]) == ("node.replace", "UPS 1Z")


def test_the_replace_link_needs_the_wipe_permission(quiet: None) -> None:
    node = NodeFactory(state=NodeState.ACTIVE)
    support = Client()
    support.force_login(UserFactory(is_staff=True, perms=["sites.view_node", "sites.change_node", "sites.view_alert"]))

    assert support.get(f"/admin/sites/node/{node.pk}/replace/").status_code == 403
    assert support.post(f"/admin/sites/node/{node.pk}/replace/", {"confirm": node.hostname}).status_code == 403
    assert WorkflowRun.objects.count() == 0
    assert support.get("/admin/sites/alert/").status_code == 200


def test_the_replace_link_of_a_missing_node_is_a_404(staff: Client) -> None:
    assert staff.get("/admin/sites/node/987654/replace/").status_code == 404
