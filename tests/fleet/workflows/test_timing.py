"""LeaseTiming's relations, the wire protocol that carries them, and the one tolerance left between clocks."""

import datetime as dt
from typing import Any

import pytest
from django.db.models.functions import Now

from fleet.workflows import dispatch, runs, services, timing
from fleet.workflows.choices import Advanced, RunState
from fleet.workflows.models import WorkflowRun
from fleet.workflows.tasks import workflow_advance_task
from fleet.workflows.timing import HANDOVER_MARGIN, LeaseTiming, claim_seconds

TIMEOUTS = [0.1, 1.0, 10.0, 30.0, 60.0, 600.0, 3600.0]
FLOORS = [0.0, 3.0, 60.0, 7200.0]


@pytest.mark.parametrize("floor", FLOORS)
@pytest.mark.parametrize("timeout", TIMEOUTS)
def test_a_lease_always_outlives_celerys_hard_limit(timeout: float, floor: float) -> None:
    t = LeaseTiming(timeout, floor)
    assert timeout < t.soft_limit < t.hard_limit < t.needed  # interrupted, then killed, then free to take over
    assert t.lease >= t.to_send > t.needed


@pytest.mark.parametrize("floor", FLOORS)
@pytest.mark.parametrize("timeout", TIMEOUTS)
def test_a_messages_lease_covers_what_the_receiver_checks_after_queueing_up_to_the_margin(
    timeout: float, floor: float, settings: Any
) -> None:
    settings.FLEET_WORKFLOW_LEASE_SECONDS = floor
    t = LeaseTiming.of(timeout)
    assert t.floor == floor
    # Handed over: taken by the sender for the receiver.
    assert t.lease - HANDOVER_MARGIN >= t.needed
    # Asked for (`lease` in the message): the receiver's claim takes at least that.
    assert claim_seconds(t.to_send) - HANDOVER_MARGIN >= t.needed
    # A message without a hint (the sweeper's, or an older release's) still gets the floor.
    assert claim_seconds(None) == floor


def test_the_default_settings_redeliver_only_after_every_delayed_message_is_due(settings: Any) -> None:
    # Messages are delayed by less than a sweep; the sweeper re-sends one only after REDELIVER seconds.
    assert settings.FLEET_WORKFLOW_REDELIVER_SECONDS > settings.FLEET_WORKFLOW_SWEEP_SECONDS


# --- the wire protocol ------------------------------------------------------------------------------


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []

    def send_task(name: str, args: list[Any], kwargs: dict[str, Any], **options: Any) -> None:
        messages.append({"name": name, "args": args, "kwargs": kwargs, **options})

    monkeypatch.setattr(dispatch.app, "send_task", send_task)
    return messages


def test_a_message_carries_the_run_and_a_handed_over_lease_or_the_lease_to_take(
    published: list[dict[str, Any]],
) -> None:
    t = LeaseTiming.of(30.0)
    dispatch.enqueue_advance(7, queue="io", step_timeout=30.0, lease_token="handoff/abc", countdown=0.5)
    dispatch.enqueue_advance(8, queue="control", step_timeout=30.0)

    handed, asked = published
    assert (handed["name"], handed["args"], handed["kwargs"]) == (
        "workflows.advance",
        [7],
        {"lease_token": "handoff/abc"},
    )
    assert (handed["queue"], handed["countdown"]) == ("io", 0.5)
    assert (asked["args"], asked["kwargs"], "countdown" in asked) == ([8], {"lease": t.to_send}, False)
    for message in published:
        assert (message["soft_time_limit"], message["time_limit"]) == (t.soft_limit, t.hard_limit)


def test_flower_sees_which_run_and_subject_a_message_serves_never_the_lease(
    published: list[dict[str, Any]],
) -> None:
    run = WorkflowRun(pk=812, kind="rollout.site", current_step="converge", subject_repr="TX-1042 in rollout 7")
    dispatch.enqueue_advance(
        812, queue="io", step_timeout=30.0, lease_token="handoff/secret", label=dispatch.run_label(run)
    )
    dispatch.enqueue_advance(9, queue="io", step_timeout=30.0)

    labelled, bare = published
    assert labelled["argsrepr"] == "(812,) rollout.site run 812 at converge: TX-1042 in rollout 7"
    assert "secret" not in labelled["kwargsrepr"] and labelled["kwargs"] == {"lease_token": "handoff/secret"}
    assert bare["argsrepr"] == "(9,) run 9" and bare["args"] == [9]  # the wire protocol is unchanged


@pytest.mark.django_db
def test_the_task_understands_both_kinds_of_message(start: Any) -> None:
    # As sent by this release or the previous one (same task, same arguments).
    asked = start(kind="noop")
    assert workflow_advance_task(asked.pk, lease=12.0) == Advanced.DONE

    handover = WorkflowRun.objects.get(pk=asked.pk).lease_owner
    assert handover.startswith("handoff/")
    assert workflow_advance_task(asked.pk, lease_token=handover) == Advanced.DONE
    assert workflow_advance_task(asked.pk) == Advanced.NOT_DUE  # leased to the next message


# --- one clock --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_every_message_sent_now_finds_its_run_due_without_any_tolerance(
    start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every time a run is stored under is the database's, so a message sent after the write that made a
    run due finds it due, even within the same millisecond (SQLite's clock counts milliseconds): no
    early-wake allowance is needed for start, wake, cancel, retry, a short park or a hand-over."""
    monkeypatch.setattr(runs, "EARLY_MESSAGE_SECONDS", 0.0)
    run = start(["wait", "retry", "fail"])

    assert runs.claim(run.pk, "w/start", 30.0) is not None  # start: due by its column default
    assert runs.park(WorkflowRun.objects.get(pk=run.pk), "w/start", delay=0.0, progress=True, message_sent=True)
    assert runs.claim(run.pk, "w/park", 30.0) is not None  # a park due now
    assert runs.park(WorkflowRun.objects.get(pk=run.pk), "w/park", delay=3600, progress=True, message_sent=False)
    assert services.workflow_wake(run=run)
    assert runs.claim(run.pk, "w/wake", 30.0) is not None  # woken
    assert runs.park(WorkflowRun.objects.get(pk=run.pk), "w/wake", delay=3600, progress=True, message_sent=False)
    services.workflow_cancel(run=run, actor="test", source="test", reason="x")
    claimed = runs.claim(run.pk, "w/cancel", 30.0)  # cancelled
    assert claimed is not None
    assert runs.finish(claimed, "w/cancel", state=RunState.FAILED, error="x", step_index=0, current_step="first")
    services.workflow_retry(run=run, actor="test", source="test")
    claimed = runs.claim(run.pk, "w/retry", 30.0)  # retried
    assert claimed is not None
    assert runs.move_on_now(
        claimed, "w/retry", step_index=1, step_name="second", handover="handoff/h", lease_seconds=30, delay=0.0
    )
    assert runs.claim_handed_over(run.pk, "handoff/h") is not None  # handed over


@pytest.mark.django_db
def test_a_delayed_message_from_a_clock_running_ahead_is_still_accepted(start: Any) -> None:
    """What EARLY_MESSAGE_SECONDS is still for: a delayed message is held back by a worker's clock, while
    "due" is the database's. One that arrives half a second early is taken, not left to the sweeper."""
    run = start(["done", "done"])
    assert runs.claim(run.pk, "w/1", 30.0) is not None
    early = timing.EARLY_MESSAGE_SECONDS / 2
    WorkflowRun.objects.filter(pk=run.pk).update(wake_at=Now() + dt.timedelta(seconds=early), lease_until=None)

    assert runs.claim(run.pk, "w/2", 30.0) is not None
