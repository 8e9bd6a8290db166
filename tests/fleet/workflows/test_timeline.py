"""The timeline: repeated waits of a step are one StepRun with a poll count, shown in the API and the admin."""

import datetime as dt
import re
from typing import Any

import pytest
from django.db.models.functions import Now
from django.test import Client
from rest_framework.test import APIClient

from fleet.admin_display import duration
from fleet.workflows import runs
from fleet.workflows.choices import Advanced, StepState
from fleet.workflows.models import StepRun, WorkflowRun
from fleet.workflows.timeline_view import group, wait_sentence
from tests.fleet.workflows.conftest import deliver, make_due

pytestmark = pytest.mark.django_db


def timeline(run: WorkflowRun) -> list[tuple[str, str, int, str]]:
    rows = StepRun.objects.filter(run=run).order_by("id")
    return [(row.step, row.state, row.polls, row.message) for row in rows]


def deliver_all(run: WorkflowRun, times: int) -> list[Advanced]:
    outcomes = []
    for _ in range(times):
        if WorkflowRun.objects.get(pk=run.pk).state == "waiting":
            make_due(run)  # the wait is over
        outcomes.append(deliver(run))
    return outcomes


def test_consecutive_waits_of_a_step_are_one_row_from_the_first_poll_to_the_last(start: Any) -> None:
    run = start(["wait", "wait", "wait", "done", "done"])

    assert deliver_all(run, 3) == [Advanced.WAITING] * 3
    row = StepRun.objects.get(run=run)
    assert (row.step, row.state, row.polls, row.message) == ("first", StepState.WAITING, 3, "node not Ready yet")
    first_started = row.started_at
    assert deliver_all(run, 2) == [Advanced.DONE, Advanced.FINISHED]

    assert timeline(run) == [
        ("first", StepState.WAITING, 3, "node not Ready yet"),
        ("first", StepState.DONE, 1, ""),
        ("second", StepState.DONE, 1, ""),
    ]
    waited = StepRun.objects.filter(run=run).first()
    assert waited is not None and waited.started_at == first_started  # the first poll's start is kept
    assert waited.finished_at is not None and first_started is not None and waited.finished_at > first_started


def test_a_retry_between_waits_starts_a_new_row(start: Any) -> None:
    run = start(["wait", "retry", "wait", "wait"])

    deliver_all(run, 4)

    assert [(step, state, polls) for step, state, polls, _ in timeline(run)] == [
        ("first", StepState.WAITING, 1),
        ("first", StepState.RETRYING, 1),
        ("first", StepState.WAITING, 2),
    ]


def test_a_lost_attempt_between_waits_starts_a_new_row(start: Any) -> None:
    run = start(["wait", "wait", "wait"])
    deliver_all(run, 2)
    make_due(run)
    assert runs.claim(run.pk, "dead-worker/1", 30.0) is not None  # ... and that worker was SIGKILLed
    WorkflowRun.objects.filter(pk=run.pk).update(lease_until=Now() - dt.timedelta(seconds=1))

    assert deliver(run) == Advanced.WAITING

    states = [(state, polls) for _, state, polls, _ in timeline(run)]
    assert states == [(StepState.WAITING, 2), (StepState.TIMED_OUT, 1), (StepState.WAITING, 1)]


def test_the_api_and_the_admin_show_the_polls(start: Any, admin_api: APIClient, admin_client: Client) -> None:
    run = start(["wait", "wait", "wait"])
    deliver_all(run, 3)

    body = admin_api.get(f"/api/v1/workflow-runs/{run.pk}/").json()
    (step,) = body["steps"]
    assert {"name", "state", "attempt", "started_at", "finished_at", "message"} <= set(step)  # the contract
    assert (step["name"], step["state"], step["polls"]) == ("first", "waiting", 3)
    assert step["duration_seconds"] >= 0

    page = admin_client.get(f"/admin/workflows/workflowrun/{run.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    # One line for the three polls, and what the run waits for now
    assert re.search(r"waiting [0-9.]+ s so far \(node not Ready yet\): 3 checks", html), html
    assert html.count('class="run-step"') == 1
    assert "Now: step first waits: node not Ready yet; next check at" in html


def test_wait_sentences_read_as_people_say_them() -> None:
    assert (
        wait_sentence("waiting for the edge to apply 3f9c2e1 (at 1a2b3c4)", polls=73, seconds=150)
        == "waited 2 min 30 s for the edge to apply 3f9c2e1 (at 1a2b3c4): 73 checks"
    )
    assert (
        wait_sentence("waiting: unreachable since 14:02:11 UTC: cannot reach the cluster", polls=1, seconds=4)
        == "waited 4 s, unreachable since 14:02:11 UTC: cannot reach the cluster: 1 check"
    )
    assert duration(3900) == "1 h 05 min"


def test_each_step_shows_once_with_its_attempts(start: Any, admin_client: Client) -> None:
    run = start(["retry", "retry", "done", "done"])
    deliver_all(run, 4)

    groups = group(list(StepRun.objects.filter(run=run).order_by("id")))

    assert [(g.step, g.attempts, g.outcome) for g in groups] == [("first", 3, "done"), ("second", 1, "done")]
    html = admin_client.get(f"/admin/workflows/workflowrun/{run.pk}/change/").content.decode()
    assert html.count('class="run-step"') == 2 and "3 attempts" in html
