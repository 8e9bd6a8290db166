"""Manual state changes in the admin and for sites: the admin's state field cannot wipe, retire or quarantine a node
but cordons, the retire action needs the permission, a reason and the hostname, and a site is decommissioned only
by its action."""

from typing import Any

import pytest

from fleet.audit.models import AuditEvent
from sites.choices import (
    NODE_CREDENTIAL_REVOKED_STATES,
    NodeState,
    SiteState,
)
from sites.models import Node, NodeCredential, Site
from tests.factories import NodeFactory, SiteFactory, admin_for, api_for
from tests.sites.test_manual_transitions import NODE_CLERK, heartbeat, machine, transitions_of

pytestmark = pytest.mark.django_db


# --- the admin ---------------------------------------------------------------------------------------


def node_form(node: Node, **changes: str) -> dict[str, Any]:
    return {
        "site": node.site.pk,
        "hostname": node.hostname,
        "mac": node.mac,
        "role": node.role,
        "hardware_model": node.hardware_model,
        "state": node.state,
        "reason": "",
        "credentials-TOTAL_FORMS": "0",
        "credentials-INITIAL_FORMS": "0",
        **changes,
    }


def assert_asks_to_type_the_name(client: Any, url: str, selected: dict[str, Any], *, reason: str, noun: str) -> None:
    """The admin action on `selected` first asks for the object's name to be typed, then refuses a wrong one."""
    page = client.post(url, selected)
    assert page.status_code == 200 and f"Type the {noun}" in page.content.decode()
    wrong = client.post(url, {**selected, "reason": reason, "confirm": "nope"})
    assert wrong.status_code == 200 and "to confirm" in wrong.content.decode()


@pytest.mark.parametrize(
    ("start", "to"),
    [
        ("cordoned", "wiping"),
        ("wiping", "wiped"),
        ("wiped", "retired"),
        ("active", "retired"),
        ("joining", "quarantined"),
    ],
)
def test_the_admin_state_field_cannot_wipe_retire_or_quarantine(start: str, to: str) -> None:
    node = NodeFactory(state=start)
    box = machine(node)
    client = admin_for(NODE_CLERK)

    response = client.post(f"/admin/sites/node/{node.pk}/change/", node_form(node, state=to, reason="trying"))

    assert response.status_code == 200  # the form again, with the refusal on it
    page = response.content.decode()
    assert f"is {start}" in page and ("wipe workflow" in page or "retire action" in page or "check-in" in page)
    assert Node.objects.get(pk=node.pk).state == start
    assert transitions_of(node) == []
    assert NodeCredential.objects.get(node=node).revoked_at is None
    if start not in NODE_CREDENTIAL_REVOKED_STATES:
        assert heartbeat(box) == 200


def test_the_admin_state_field_cordons() -> None:
    node = NodeFactory(state=NodeState.ACTIVE)

    response = admin_for(NODE_CLERK).post(
        f"/admin/sites/node/{node.pk}/change/", node_form(node, state="cordoned", reason="noisy fan")
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    assert Node.objects.get(pk=node.pk).state == NodeState.CORDONED


def test_the_admin_retire_action_needs_the_permission_a_reason_and_the_hostname() -> None:
    node = NodeFactory(state=NodeState.WIPED)
    box = machine(node)
    selected = {"action": "retire_node", "_selected_action": [node.pk]}

    clerk = admin_for(NODE_CLERK)
    assert "retire_node" not in clerk.get("/admin/sites/node/").content.decode()
    clerk.post("/admin/sites/node/", {**selected, "reason": "eol", "confirm": node.hostname})
    assert Node.objects.get(pk=node.pk).state == NodeState.WIPED

    retirer = admin_for([*NODE_CLERK, "sites.retire_node"], "retirer")
    assert_asks_to_type_the_name(retirer, "/admin/sites/node/", selected, reason="eol", noun="node")
    assert Node.objects.get(pk=node.pk).state == NodeState.WIPED

    done = retirer.post("/admin/sites/node/", {**selected, "reason": "eol", "confirm": node.hostname})

    assert done.status_code == 302
    assert Node.objects.get(pk=node.pk).state == NodeState.RETIRED
    assert heartbeat(box) == 401


# --- sites: decommissioning ----------------------------------------------------------------------------


SITE_CLERK = ["sites.view_site", "sites.change_site"]


def test_a_plain_state_change_cannot_decommission_a_site() -> None:
    site = SiteFactory(state=SiteState.ACTIVE)

    response = api_for(SITE_CLERK).patch(f"/api/v1/sites/{site.code}/", {"state": "decommissioned"}, format="json")

    assert response.status_code == 400
    assert "decommission action" in response.json()["state"][0]
    assert Site.objects.get(pk=site.pk).state == SiteState.ACTIVE
    assert not AuditEvent.objects.filter(object_type="sites.site", verb="transition").exists()


def test_other_site_state_changes_still_work() -> None:
    site = SiteFactory(state=SiteState.ACTIVE)

    response = api_for(SITE_CLERK).patch(f"/api/v1/sites/{site.code}/", {"state": "offline"}, format="json")

    assert response.status_code == 200 and response.json()["state"] == "offline"


def test_decommission_needs_the_permission_a_reason_and_the_code() -> None:
    site = SiteFactory(state=SiteState.ACTIVE)
    url = f"/api/v1/sites/{site.code}/decommission/"

    assert api_for(SITE_CLERK).post(url, {"reason": "closed", "confirm": site.code}, format="json").status_code == 403
    closer = api_for(["sites.view_site", "sites.decommission_site"], "closer")
    no_reason = closer.post(url, {"confirm": site.code}, format="json")
    assert no_reason.status_code == 400 and "reason" in no_reason.json()
    blank = closer.post(url, {"reason": " ", "confirm": site.code}, format="json")
    assert blank.status_code == 400 and "reason" in blank.json()
    wrong = closer.post(url, {"reason": "closed", "confirm": "TX-9999"}, format="json")
    assert wrong.status_code == 400 and site.code in wrong.json()["confirm"][0]
    assert Site.objects.get(pk=site.pk).state == SiteState.ACTIVE

    done = closer.post(url, {"reason": "restaurant closed", "confirm": site.code}, format="json")

    # The site is decommissioned at once; the workflow revokes its credentials and archives its project
    assert done.status_code == 202, done.content
    assert (done.json()["kind"], done.json()["subject"]) == ("site.decommission", site.code)
    assert Site.objects.get(pk=site.pk).state == SiteState.DECOMMISSIONED
    event = AuditEvent.objects.get(object_type="sites.site", verb="transition")
    assert event.payload == {"from": "active", "to": "decommissioned", "reason": "restaurant closed"}
    assert event.actor_repr == "closer"
    again = closer.post(url, {"reason": "restaurant closed", "confirm": site.code}, format="json")
    assert again.status_code == 409 and "already decommissioned" in again.json()["detail"]


def test_the_admin_cannot_decommission_by_the_state_field_only_by_the_action() -> None:
    site = SiteFactory(state=SiteState.ACTIVE)
    form = {
        "name": site.name,
        "region": site.region,
        "timezone": site.timezone,
        "labels": "{}",
        "business_hours": "[]",
        "maintenance_windows": "[]",
        "repo_url": "",
        "state": "decommissioned",
        "reason": "closed",
        "cluster-TOTAL_FORMS": "1",
        "cluster-INITIAL_FORMS": "1",
        "cluster-0-id": site.cluster.pk,
        "cluster-0-site": site.pk,
        "nodes-TOTAL_FORMS": "0",
        "nodes-INITIAL_FORMS": "0",
    }
    clerk = admin_for([*SITE_CLERK, "sites.view_cluster", "sites.view_node"])

    refused = clerk.post(f"/admin/sites/site/{site.pk}/change/", form)

    assert refused.status_code == 200 and "decommission action" in refused.content.decode()
    assert Site.objects.get(pk=site.pk).state == SiteState.ACTIVE

    selected = {"action": "decommission_site", "_selected_action": [site.pk]}
    clerk.post("/admin/sites/site/", {**selected, "reason": "closed", "confirm": site.code})
    assert Site.objects.get(pk=site.pk).state == SiteState.ACTIVE  # no permission: not even offered

    closer = admin_for([*SITE_CLERK, "sites.decommission_site"], "closer")
    assert_asks_to_type_the_name(closer, "/admin/sites/site/", selected, reason="closed", noun="site")
    assert Site.objects.get(pk=site.pk).state == SiteState.ACTIVE

    done = closer.post("/admin/sites/site/", {**selected, "reason": "closed", "confirm": site.code})

    assert done.status_code == 302
    assert Site.objects.get(pk=site.pk).state == SiteState.DECOMMISSIONED
