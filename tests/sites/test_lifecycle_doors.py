"""The doors into the node lifecycle: the API's wipe, replace and provision actions (202 with the run, 400/403/409
naming the field or the run) and the admin's forms, which go through the same services. No simulator: the runs are
started, not advanced."""

from typing import Any

import pytest

from fleet.audit.models import AuditEvent
from fleet.workflows.models import WorkflowRun
from sites.choices import NodeState
from sites.models import Node
from tests.factories import NodeFactory, UserFactory

# --- the doors --------------------------------------------------------------------------------------


def wipe_body(node: Node, **extra: Any) -> dict[str, Any]:
    return {"reason": "customer asked", "confirm": node.hostname, **extra}


@pytest.mark.django_db
def test_wipe_api_answers_202_with_the_run(admin_api: Any, quiet: None) -> None:
    node = NodeFactory()

    response = admin_api.post(f"/api/v1/nodes/{node.pk}/wipe/", wipe_body(node, rejoin=True), format="json")

    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["kind"] == "node.wipe" and body["state"] == "pending" and body["created_by"] == "root"
    assert {"id", "subject", "current_step", "error", "created_at", "steps"} <= set(body)
    event = AuditEvent.objects.get(verb="wipe_request")
    assert (
        event.actor_repr == "root" and event.payload["rejoin"] is True and event.payload["reason"] == "customer asked"
    )


@pytest.mark.django_db
def test_wipe_with_a_wrong_confirmation_is_400_naming_confirm(admin_api: Any, quiet: None) -> None:
    node = NodeFactory()

    response = admin_api.post(f"/api/v1/nodes/{node.pk}/wipe/", wipe_body(node, confirm="other"), format="json")

    assert response.status_code == 400
    assert "hostname" in response.json()["confirm"][0]
    assert not WorkflowRun.objects.exists()


@pytest.mark.django_db
def test_second_destructive_action_while_one_runs_is_409_naming_the_run(admin_api: Any, quiet: None) -> None:
    node = NodeFactory()
    first = admin_api.post(f"/api/v1/nodes/{node.pk}/wipe/", wipe_body(node), format="json").json()

    again = admin_api.post(
        f"/api/v1/nodes/{node.pk}/replace/",
        wipe_body(node, replacement_serial="NEW-1", shipment_ref="x", replacement_mac="94:c6:91:cc:00:01"),
        format="json",
    )

    assert again.status_code == 409
    assert f"node.wipe run {first['id']}" in again.json()["detail"]


@pytest.mark.django_db
def test_replace_naming_a_serial_in_use_is_400(admin_api: Any, quiet: None) -> None:
    node, other = NodeFactory(), NodeFactory(serial="TAKEN-1")

    response = admin_api.post(
        f"/api/v1/nodes/{node.pk}/replace/",
        wipe_body(node, replacement_serial=other.serial, shipment_ref="x", replacement_mac="94:c6:91:cc:00:02"),
        format="json",
    )

    assert response.status_code == 400
    assert "TAKEN-1 is already in use" in str(response.json())
    assert not WorkflowRun.objects.exists()


@pytest.mark.django_db
def test_provision_of_an_active_node_is_409_naming_its_state(admin_api: Any, quiet: None) -> None:
    node = NodeFactory(state=NodeState.ACTIVE)

    response = admin_api.post(f"/api/v1/nodes/{node.pk}/provision/", {}, format="json")

    assert response.status_code == 409
    assert "is active" in response.json()["detail"]


@pytest.mark.django_db
def test_read_only_user_cannot_wipe_replace_or_provision(readonly_api: Any, quiet: None) -> None:
    node = NodeFactory(state=NodeState.PREREGISTERED)

    for action, body in (("wipe", wipe_body(node)), ("replace", wipe_body(node)), ("provision", {})):
        response = readonly_api.post(f"/api/v1/nodes/{node.pk}/{action}/", body, format="json")
        assert response.status_code == 403, action
    assert not WorkflowRun.objects.exists()


@pytest.mark.django_db
def test_change_node_permission_alone_does_not_allow_a_wipe(api: Any, quiet: None) -> None:
    node = NodeFactory()
    api.force_authenticate(UserFactory(perms=["sites.view_node", "sites.change_node", "sites.provision_node"]))

    assert api.post(f"/api/v1/nodes/{node.pk}/wipe/", wipe_body(node), format="json").status_code == 403
    api.force_authenticate(UserFactory(username="wiper", perms=["sites.view_node", "sites.wipe_node"]))
    assert api.post(f"/api/v1/nodes/{node.pk}/wipe/", wipe_body(node), format="json").status_code == 202


# --- admin ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_wipe_asks_for_a_reason_and_the_hostname_then_starts_the_run(staff: Any, quiet: None) -> None:
    node = NodeFactory()
    selected = {"action": "wipe_node", "_selected_action": [node.pk]}

    page = staff.post("/admin/sites/node/", selected)
    assert page.status_code == 200
    assert "Type the node" in page.content.decode() and node.hostname in page.content.decode()

    wrong = staff.post("/admin/sites/node/", {**selected, "reason": "RMA", "confirm": "nope"})
    assert wrong.status_code == 200 and "to confirm" in wrong.content.decode()
    assert not WorkflowRun.objects.exists()

    done = staff.post("/admin/sites/node/", {**selected, "reason": "RMA", "confirm": node.hostname, "rejoin": "on"})
    assert done.status_code == 302
    run = WorkflowRun.objects.get()
    assert (run.kind, run.context["rejoin"], run.created_by_repr) == ("node.wipe", True, "root")
    assert AuditEvent.objects.filter(verb="wipe_request", source="admin").count() == 1


@pytest.mark.django_db
def test_admin_replace_and_provision_go_through_the_services(staff: Any, quiet: None) -> None:
    old, new = NodeFactory(), NodeFactory(state=NodeState.PREREGISTERED)
    replace = {"action": "replace_node", "_selected_action": [old.pk], "reason": "dead", "confirm": old.hostname}
    replace |= {"replacement_serial": "G6ADM0000001", "replacement_mac": "94:c6:91:dd:00:01", "shipment_ref": "UPS"}

    assert staff.post("/admin/sites/node/", replace).status_code == 302
    assert (
        staff.post("/admin/sites/node/", {"action": "provision_nodes", "_selected_action": [new.pk]}).status_code == 200
    )
    response = staff.post(
        "/admin/sites/node/", {"action": "provision_nodes", "_selected_action": [new.pk], "confirm": "yes"}
    )

    assert response.status_code == 302
    assert sorted(WorkflowRun.objects.values_list("kind", flat=True)) == ["node.provision", "node.replace"]
    assert WorkflowRun.objects.get(kind="node.replace").context["shipment_ref"] == "UPS"
    page = staff.get(f"/admin/sites/node/{old.pk}/change/").content.decode()
    assert f"subject_type=sites.node&amp;subject_id={old.pk}" in page and "1 run(s)" in page
    runs = staff.get(f"/admin/workflows/workflowrun/?subject_type=sites.node&subject_id={old.pk}")
    assert runs.status_code == 200 and "node.replace" in runs.content.decode()


@pytest.mark.django_db
def test_replace_follows_the_contract_without_a_mac(admin_api: Any, quiet: None) -> None:
    node = NodeFactory()

    response = admin_api.post(
        f"/api/v1/nodes/{node.pk}/replace/",
        wipe_body(node, replacement_serial="NEW-NOMAC", shipment_ref="UPS-1"),
        format="json",
    )

    assert response.status_code == 202, response.content
    assert response.json()["kind"] == "node.replace"
