"""The workflow-runs API: the contract's shape, filters, constant queries, cancel and its permissions."""

from typing import Any

import pytest
from rest_framework.test import APIClient

from fleet.workflows.choices import Advanced, RunState
from fleet.workflows.models import WorkflowRun
from tests.factories import NodeFactory, UserFactory
from tests.fleet.workflows.conftest import deliver

pytestmark = pytest.mark.django_db

RUN_KEYS = {"id", "kind", "state", "subject", "current_step", "error", "created_by", "created_at", "steps"}
STEP_KEYS = {"name", "state", "attempt", "started_at", "finished_at", "message"}


def client_with(*perms: str) -> APIClient:
    client = APIClient()
    client.force_authenticate(UserFactory(perms=list(perms)))
    return client


def test_a_run_has_the_contract_shape_with_its_steps(admin_api: APIClient, start: Any) -> None:
    node = NodeFactory(hostname="tx-a")
    run = start(["done", "wait"], subject=node, exclusive_key=None)
    WorkflowRun.objects.filter(pk=run.pk).update(context={"plan": ["done", "wait"], "join_token": "s3cret"})
    deliver(run)
    deliver(run)

    body = admin_api.get(f"/api/v1/workflow-runs/{run.pk}/").json()

    assert RUN_KEYS <= set(body)
    assert (body["kind"], body["state"], body["current_step"]) == ("unit.scripted", "waiting", "second")
    assert (body["subject"], body["subject_type"], body["subject_id"]) == (str(node), "sites.node", str(node.pk))
    assert body["created_by"] == "test"
    assert [(s["name"], s["state"], s["attempt"]) for s in body["steps"]] == [
        ("first", "done", 1),
        ("second", "waiting", 1),
    ]
    assert all(STEP_KEYS <= set(step) for step in body["steps"])
    assert body["steps"][1]["message"] == "node not Ready yet"
    assert body["context"]["join_token"] == "********"
    assert "s3cret" not in str(body)


def test_list_filters_and_paginates_with_a_constant_number_of_queries(
    admin_api: APIClient, start: Any, django_assert_max_num_queries: Any
) -> None:
    runs = [start(["done", "done"]) for _ in range(12)]
    for run in runs[:6]:
        deliver(run)
        deliver(run)
    start(kind="noop")

    with django_assert_max_num_queries(6):
        page = admin_api.get("/api/v1/workflow-runs/?page_size=10").json()
    succeeded = admin_api.get("/api/v1/workflow-runs/?state=succeeded&kind=unit.scripted").json()
    by_subject = admin_api.get("/api/v1/workflow-runs/?subject_type=sites.node&subject_id=1").json()
    noop = admin_api.get("/api/v1/workflow-runs/?kind=noop").json()

    assert len(page["results"]) == 10 and page["next"]
    assert {r["id"] for r in succeeded["results"]} == {r.pk for r in runs[:6]}
    assert all(len(r["steps"]) == 2 for r in succeeded["results"])
    assert by_subject["results"] == []
    assert [r["kind"] for r in noop["results"]] == ["noop"]


def test_cancel_answers_202_with_the_run(admin_api: APIClient, start: Any) -> None:
    run = start(["wait"])
    deliver(run)

    response = admin_api.post(f"/api/v1/workflow-runs/{run.pk}/cancel/", {"reason": "wrong node"}, format="json")

    assert response.status_code == 202
    assert response.json()["cancel_requested"] is True and response.json()["id"] == run.pk
    assert deliver(run) == Advanced.FINISHED
    assert WorkflowRun.objects.get(pk=run.pk).state == RunState.CANCELLED


def test_cancel_of_an_ended_run_is_409_naming_its_state(admin_api: APIClient, start: Any) -> None:
    run = start(["fail"])
    deliver(run)

    response = admin_api.post(f"/api/v1/workflow-runs/{run.pk}/cancel/", {"reason": "x"}, format="json")

    assert response.status_code == 409
    assert "is failed" in response.json()["detail"]


def test_cancel_needs_a_reason(admin_api: APIClient, start: Any) -> None:
    run = start(["wait"])
    response = admin_api.post(f"/api/v1/workflow-runs/{run.pk}/cancel/", {}, format="json")
    assert response.status_code == 400 and "reason" in response.json()


def test_permissions(api: APIClient, start: Any) -> None:
    run = start(["wait"])
    viewer = client_with("workflows.view_workflowrun")
    canceller = client_with("workflows.view_workflowrun", "workflows.cancel_workflowrun")
    nobody = client_with()
    cancel = f"/api/v1/workflow-runs/{run.pk}/cancel/"

    assert api.get("/api/v1/workflow-runs/").status_code == 401
    assert api.post(cancel, {"reason": "x"}, format="json").status_code == 401
    assert nobody.get("/api/v1/workflow-runs/").status_code == 403
    assert viewer.get(f"/api/v1/workflow-runs/{run.pk}/").status_code == 200
    assert viewer.post(cancel, {"reason": "x"}, format="json").status_code == 403
    assert viewer.post("/api/v1/workflow-runs/", {}, format="json").status_code in (403, 405)
    assert canceller.post(cancel, {"reason": "x"}, format="json").status_code == 202
    assert nobody.get("/api/v1/workflow-runs/999999/").status_code == 403
    assert viewer.get("/api/v1/workflow-runs/999999/").status_code == 404
