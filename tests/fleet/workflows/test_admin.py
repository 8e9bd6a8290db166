"""The admin: read-only run pages with the step timeline, and the Cancel action with its reason page."""

from typing import Any

import pytest
from django.test import Client

from fleet.audit.models import AuditEvent
from fleet.workflows.models import WorkflowRun
from tests.fleet.workflows.conftest import deliver

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    [
        "/admin/workflows/workflowrun/",
        "/admin/workflows/workflowrun/?state__exact=waiting&kind__exact=unit.scripted",
        "/admin/workflows/workflowrun/?q=node",
    ],
)
def test_run_lists_render(staff: Client, start: Any, path: str) -> None:
    run = start(["wait"])
    deliver(run)
    assert staff.get(path).status_code == 200


def test_run_page_shows_the_timeline_with_badges_and_no_secrets(staff: Client, start: Any) -> None:
    run = start(["raise", "done", "wait"])
    WorkflowRun.objects.filter(pk=run.pk).update(context={"plan": ["raise", "done", "wait"], "node_token": "s3cret"})
    deliver(run)
    WorkflowRun.objects.filter(pk=run.pk).update(wake_at=None)
    deliver(run)

    page = staff.get(f"/admin/workflows/workflowrun/{run.pk}/change/").content.decode()

    assert "RuntimeError: boom" in page
    assert page.index("run-line state-retrying") < page.index("run-line state-done")  # oldest first, newest last
    assert "Retrying" in page
    assert "border-radius:9px" in page  # badges
    assert "s3cret" not in page


def test_cancel_action_asks_for_a_reason_then_cancels(staff: Client, start: Any) -> None:
    run = start(["wait"])
    deliver(run)
    data = {"action": "cancel_runs", "_selected_action": [str(run.pk)]}

    confirmation = staff.post("/admin/workflows/workflowrun/", data)
    assert confirmation.status_code == 200
    assert "reason" in confirmation.content.decode()
    assert not WorkflowRun.objects.get(pk=run.pk).cancel_requested

    done = staff.post("/admin/workflows/workflowrun/", {**data, "confirm": "yes", "reason": "wrong node"})

    assert done.status_code == 302
    run = WorkflowRun.objects.get(pk=run.pk)
    assert run.cancel_requested and run.cancel_reason == "wrong node"
    assert AuditEvent.objects.get(verb="workflow_cancel", object_id=str(run.pk)).source == "admin"
