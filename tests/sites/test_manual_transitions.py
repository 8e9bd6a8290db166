"""Support staff are trusted only as far as their permissions: a plain state change (API PATCH `state`,
the admin's state field) cannot stand in for a wipe, a retirement or a decommissioning, and every move
into wiping, wiped, retired or quarantined revokes the machine's credential (tried with the real device
API: its heartbeat answers 401 afterwards)."""

from typing import Any

import pytest
from rest_framework.test import APIClient

from fleet.audit.models import AuditEvent
from sites import devices, services
from sites.choices import (
    NODE_CREDENTIAL_REVOKED_STATES,
    NODE_MANUAL_TRANSITIONS,
    NODE_TRANSITIONS,
    NodeState,
)
from sites.models import Node, NodeCredential
from tests.factories import NodeFactory, api_for

pytestmark = pytest.mark.django_db

HEARTBEAT = "/api/v1/device/heartbeat/"
NODE_CLERK = ["sites.view_node", "sites.change_node"]


def machine(node: Node) -> APIClient:
    """The machine itself, holding a fresh credential, talking to the real device API."""
    _credential, plaintext = devices.node_credentials_issue(node=node, actor="test", source="test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Node {plaintext}")
    return client


def heartbeat(client: APIClient) -> int:
    return client.post(HEARTBEAT, {"versions": {"k3s": "v1.31.2+k3s1"}}, format="json").status_code


def transitions_of(node: Node) -> list[dict[str, Any]]:
    events = AuditEvent.objects.filter(object_type="sites.node", object_id=str(node.pk), verb="transition")
    return list(events.values_list("payload", flat=True))


# Every move a person must not make by changing the state: all but the manual table's.
REFUSED = [
    (start, to)
    for start in NodeState.values
    for to in NodeState.values
    if to != start and to not in NODE_MANUAL_TRANSITIONS.get(start, frozenset())
]
# The finding's path and the other ways into the destructive states that the full table allows.
INTO_DESTRUCTIVE = [
    (start, to) for start, targets in NODE_TRANSITIONS.items() for to in targets if to in NODE_CREDENTIAL_REVOKED_STATES
]


# --- the API -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("start", "to"), REFUSED)
def test_change_node_alone_cannot_move_a_node_anywhere_but_the_manual_moves(start: str, to: str) -> None:
    node = NodeFactory(state=start)
    box = machine(node)
    api = api_for(NODE_CLERK)

    response = api.patch(f"/api/v1/nodes/{node.pk}/", {"state": to, "reason": "trying"}, format="json")

    assert response.status_code in (400, 409), response.content
    assert response.json()["state"] and response.json()["detail"]
    node.refresh_from_db()
    assert node.state == start
    assert transitions_of(node) == []
    assert NodeCredential.objects.get(node=node).revoked_at is None
    if start not in NODE_CREDENTIAL_REVOKED_STATES and start != NodeState.RETIRED:
        assert heartbeat(box) == 200


@pytest.mark.parametrize(("start", "to"), INTO_DESTRUCTIVE)
def test_a_move_into_a_destructive_state_is_400_naming_the_door(start: str, to: str) -> None:
    node = NodeFactory(state=start)

    response = api_for(NODE_CLERK).patch(f"/api/v1/nodes/{node.pk}/", {"state": to}, format="json")

    assert response.status_code == 400, response.content
    message = response.json()["state"][0]
    door = {
        "wiping": "wipe workflow",
        "wiped": "wipe workflow",
        "retired": "retire action",
        "quarantined": "check-in quarantines",
    }[to]
    assert door in message and f"is {start}" in message
    assert Node.objects.get(pk=node.pk).state == start


def test_the_findings_path_active_cordoned_wiping_wiped_retired_stops_at_wiping() -> None:
    node = NodeFactory(state=NodeState.ACTIVE)
    box = machine(node)
    api = api_for(NODE_CLERK)
    url = f"/api/v1/nodes/{node.pk}/"

    assert api.patch(url, {"state": "cordoned", "reason": "maintenance"}, format="json").status_code == 200
    for to in ("wiping", "wiped", "retired"):
        refused = api.patch(url, {"state": to}, format="json")
        assert refused.status_code in (400, 409), (to, refused.content)

    node.refresh_from_db()
    assert node.state == NodeState.CORDONED
    assert [p["to"] for p in transitions_of(node)] == ["cordoned"]
    assert heartbeat(box) == 200  # nothing was wiped, so nothing was revoked


def test_a_refused_state_change_leaves_the_other_fields_unchanged() -> None:
    node = NodeFactory(state=NodeState.CORDONED, hardware_model="NUC 11")

    response = api_for(NODE_CLERK).patch(
        f"/api/v1/nodes/{node.pk}/", {"hardware_model": "NUC 13", "state": "wiping"}, format="json"
    )

    assert response.status_code == 400
    assert Node.objects.get(pk=node.pk).hardware_model == "NUC 11"
    assert not AuditEvent.objects.filter(object_id=str(node.pk), verb="update").exists()


@pytest.mark.parametrize(
    ("start", "to"),
    [("active", "cordoned"), ("cordoned", "active"), ("active", "broken"), ("cordoned", "broken")],
)
def test_cordon_uncordon_and_mark_broken_work_with_change_node(start: str, to: str) -> None:
    node = NodeFactory(state=start)
    box = machine(node)

    body = {"state": to, "reason": "fan noise"}

    response = api_for(NODE_CLERK).patch(f"/api/v1/nodes/{node.pk}/", body, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["state"] == to
    assert transitions_of(node) == [{"from": start, "to": to, "reason": "fan noise"}]
    assert heartbeat(box) == 200


def test_accepting_a_quarantined_machine_needs_the_provision_permission() -> None:
    node = NodeFactory(state=NodeState.QUARANTINED)
    url = f"/api/v1/nodes/{node.pk}/"

    refused = api_for(NODE_CLERK).patch(url, {"state": "preregistered"}, format="json")
    assert refused.status_code == 403 and "sites.provision_node" in refused.json()["detail"]
    assert Node.objects.get(pk=node.pk).state == NodeState.QUARANTINED

    accepted = api_for([*NODE_CLERK, "sites.provision_node"], "provisioner").patch(
        url, {"state": "preregistered", "reason": "our machine, shipped to the wrong site"}, format="json"
    )
    assert accepted.status_code == 200, accepted.content
    assert Node.objects.get(pk=node.pk).state == NodeState.PREREGISTERED


# --- retire --------------------------------------------------------------------------------------------


def retire(api: APIClient, node: Node, **body: Any) -> Any:
    return api.post(f"/api/v1/nodes/{node.pk}/retire/", body, format="json")


def test_retire_needs_the_retire_permission_a_reason_and_the_hostname() -> None:
    node = NodeFactory(state=NodeState.WIPED)
    box = machine(node)  # a credential a wiped machine should not have: retiring must revoke it

    assert retire(api_for(NODE_CLERK), node, reason="end of life", confirm=node.hostname).status_code == 403
    retirer = api_for(["sites.view_node", "sites.retire_node"], "retirer")
    no_reason = retire(retirer, node, reason="  ", confirm=node.hostname)
    assert no_reason.status_code == 400 and "reason" in no_reason.json()
    wrong = retire(retirer, node, reason="end of life", confirm="someone-else")
    assert wrong.status_code == 400 and node.hostname in wrong.json()["confirm"][0]
    assert Node.objects.get(pk=node.pk).state == NodeState.WIPED
    assert transitions_of(node) == []

    done = retire(retirer, node, reason="end of life", confirm=node.hostname)

    assert done.status_code == 200, done.content
    assert done.json()["state"] == NodeState.RETIRED
    assert transitions_of(node) == [{"from": "wiped", "to": "retired", "reason": "end of life"}]
    assert AuditEvent.objects.filter(verb="retire_request", actor_repr="retirer").exists()
    assert AuditEvent.objects.filter(verb="revoke_credentials", object_id=str(node.pk)).exists()
    assert heartbeat(box) == 401


@pytest.mark.parametrize("state", ["active", "cordoned", "draining", "broken", "joining", "wiping"])
def test_retire_refuses_a_machine_that_may_still_hold_the_sites_data(state: str) -> None:
    node = NodeFactory(state=state)
    box = machine(node)
    retirer = api_for(["sites.view_node", "sites.retire_node"], "retirer")

    response = retire(retirer, node, reason="end of life", confirm=node.hostname)

    assert response.status_code == 409
    assert f"is {state}" in response.json()["detail"]
    assert Node.objects.get(pk=node.pk).state == state
    assert heartbeat(box) == 200


# --- the credential goes with every move into wiping, wiped, retired, quarantined ----------------------


@pytest.mark.parametrize(("start", "to"), INTO_DESTRUCTIVE)
def test_every_move_into_a_destructive_state_revokes_the_credential(start: str, to: str) -> None:
    node = NodeFactory(state=start)
    box = machine(node)
    assert heartbeat(box) == 200

    services.node_transition(node=node, to=to, actor="workflow:node.wipe#1", source="workflow", reason="step")

    assert heartbeat(box) == 401
    credential = NodeCredential.objects.get(node=node)
    assert credential.revoked_at is not None and credential.revoke_reason == f"node {to}: step"
    assert AuditEvent.objects.filter(verb="revoke_credentials", object_id=str(node.pk), source="workflow").exists()


def test_moves_that_keep_a_machine_in_service_keep_its_credential() -> None:
    node = NodeFactory(state=NodeState.ACTIVE)
    box = machine(node)

    for to in (NodeState.CORDONED, NodeState.DRAINING, NodeState.CORDONED, NodeState.BROKEN):
        services.node_transition(node=node, to=to, actor="test", source="workflow")

    assert heartbeat(box) == 200
