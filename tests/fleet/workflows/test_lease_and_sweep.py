"""advance() and the lease: one advancer at a time, a lost worker's attempt, the hand-over to the next
step's message, extension; the backoff; the sweeper."""

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.db.models.functions import Now
from django.test.utils import CaptureQueriesContext

from fleet.workflows import engine, runs
from fleet.workflows.choices import Advanced, StepState
from fleet.workflows.engine import advance, sweep
from fleet.workflows.models import StepRun, WorkflowRun
from fleet.workflows.timing import backoff_delay
from tests.fleet.workflows.conftest import deliver, make_due, reload, steps_of

pytestmark = pytest.mark.django_db


# --- the lease --------------------------------------------------------------------------------------


def test_only_one_of_two_advancers_takes_the_lease(start: Any) -> None:
    run = start(["done"])
    assert runs.claim(run.pk, "w1/a", 60) is not None
    assert runs.claim(run.pk, "w2/b", 60) is None
    assert deliver(run) == Advanced.NOT_DUE
    assert reload(run).lease_owner == "w1/a"


def test_an_expired_lease_is_taken_over_and_the_lost_attempt_shows(start: Any) -> None:
    run = start(["done", "done"])
    assert runs.claim(run.pk, "dead-worker/x", 60)  # ... and then the worker was SIGKILLed
    WorkflowRun.objects.filter(pk=run.pk).update(lease_until=Now() - dt.timedelta(seconds=1))

    assert deliver(run) == Advanced.DONE

    assert steps_of(run) == [("first", 1, StepState.TIMED_OUT), ("first", 2, StepState.DONE)]
    assert "worker was lost" in StepRun.objects.filter(run=run).first().message  # type: ignore[union-attr]


def test_a_step_that_keeps_killing_its_worker_runs_out_of_attempts(start: Any) -> None:
    run = start(["done"])
    for n in range(3):
        assert runs.claim(run.pk, f"dead/{n}", 60)
        WorkflowRun.objects.filter(pk=run.pk).update(lease_until=Now() - dt.timedelta(seconds=1))

    assert deliver(run) == Advanced.FINISHED
    assert "gave no outcome in 3 attempts" in reload(run).error


def test_a_worker_that_lost_its_lease_records_nothing(start: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    run = start(["done", "done"])
    real_run_step = engine.execute

    def overrun_and_lose_the_lease(run_: WorkflowRun, step: Any) -> Any:
        result = real_run_step(run_, step)
        # Meanwhile the lease expired and another worker took the run over.
        WorkflowRun.objects.filter(pk=run_.pk).update(lease_owner="w2/other", lease_until=Now())
        return result

    monkeypatch.setattr(engine, "execute", overrun_and_lose_the_lease)
    assert deliver(run) == Advanced.LEASE_LOST

    run = reload(run)
    assert run.step_index == 0 and run.lease_owner == "w2/other"
    assert StepRun.objects.filter(run=run).count() == 0
    assert "calls" not in run.context


def _first_step_done(start: Any, sent: list[dict[str, Any]], capture: Any) -> tuple[WorkflowRun, str]:
    """A two-step run whose first step is done, and the lease token its wake-up message carries."""
    run = start(["done", "done"])
    sent.clear()
    with capture(execute=True):
        deliver(run)
    return run, sent[0]["lease_token"]


def test_done_hands_the_next_steps_lease_to_its_message(
    start: Any, sent: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    run, token = _first_step_done(start, sent, django_capture_on_commit_callbacks)

    assert advance(run.pk, worker_id="intruder") == Advanced.NOT_DUE  # leased for the message's receiver
    assert advance(run.pk, worker_id="receiver", lease_token=token) == Advanced.FINISHED
    assert advance(run.pk, worker_id="again", lease_token=token) == Advanced.NOT_DUE  # a duplicate does nothing
    assert steps_of(run) == [("first", 1, StepState.DONE), ("second", 1, StepState.DONE)]


def test_a_handed_over_lease_that_expired_is_not_used(
    start: Any, sent: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    run, token = _first_step_done(start, sent, django_capture_on_commit_callbacks)
    WorkflowRun.objects.filter(pk=run.pk).update(lease_until=Now() - dt.timedelta(seconds=1))  # message was lost
    assert advance(run.pk, worker_id="sweeper-woken") == Advanced.FINISHED  # taken over as usual...

    assert advance(run.pk, worker_id="late", lease_token=token) == Advanced.NOT_DUE  # ...and the late message is void
    timeline = steps_of(run)
    assert timeline[1] == ("second", 1, StepState.TIMED_OUT)  # the attempt the lost message stood for
    assert timeline[2] == ("second", 2, StepState.DONE)


def test_a_step_costs_one_transaction_after_a_handoff(
    start: Any, sent: list[dict[str, Any]], django_capture_on_commit_callbacks: Any, django_assert_num_queries: Any
) -> None:
    run = start(kind="noop")
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        deliver(run)
    token = sent[0]["lease_token"]

    # The claim (a read), then UPDATE + INSERT in one transaction (a savepoint inside the test's).
    with django_assert_num_queries(5), django_capture_on_commit_callbacks(execute=True):
        assert advance(run.pk, worker_id="w", lease_token=token) == Advanced.DONE
    assert sent[-1]["lease_token"] != token


def test_a_lease_as_long_as_the_message_asks_needs_no_extension(start: Any, settings: Any) -> None:
    settings.FLEET_WORKFLOW_LEASE_SECONDS = 10
    told, untold = start(["wait"], kind="unit.long_step"), start(["wait"], kind="unit.long_step")

    with CaptureQueriesContext(connection) as without_hint:
        advance(untold.pk, worker_id="w")
    with CaptureQueriesContext(connection) as with_hint:
        advance(told.pk, worker_id="w", lease_seconds=40)

    # A 30 s step needs a lease past its hard limit: taken long enough at once, or extended after.
    assert len(without_hint) == len(with_hint) + 1
    assert "lease_until" in without_hint.captured_queries[1]["sql"]
    assert steps_of(told) == steps_of(untold) == [("first", 1, StepState.WAITING)]


# --- backoff and the sweeper ------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 10, 30])
def test_backoff_is_full_jitter_below_an_exponential_cap(attempt: int) -> None:
    delays = [backoff_delay(attempt, base=2, cap=300) for _ in range(200)]
    ceiling = min(300, 2 * 2 ** (attempt - 1))
    assert all(0 <= d <= ceiling for d in delays)
    assert max(delays) > ceiling / 2  # spread over the range, not a constant


def test_sweep_wakes_due_runs_once_and_skips_the_rest(start: Any, sent: list[dict[str, Any]], settings: Any) -> None:
    settings.FLEET_WORKFLOW_REDELIVER_SECONDS = 60
    waiting, sleeping, fresh, leased = start(["wait"]), start(["wait"]), start(["done"]), start(["done"])
    deliver(waiting)
    deliver(sleeping)
    make_due(waiting)
    runs.claim(leased.pk, "busy/1", 60)
    sent.clear()

    assert sweep() == 1  # `fresh` has its start message in flight; `sleeping` is not due; `leased` is busy
    assert sent == [{"run": waiting.pk, "queue": "control", "countdown": None}]
    assert sweep() == 0  # its message is in flight now

    settings.FLEET_WORKFLOW_REDELIVER_SECONDS = 0
    WorkflowRun.objects.filter(pk=leased.pk).update(lease_until=Now() - dt.timedelta(seconds=1))
    assert {m["run"] for m in sent[:0]} == set()
    assert sweep() == 3  # lost messages are sent again, and the dead worker's run is taken over
    assert {m["run"] for m in sent[1:]} == {waiting.pk, fresh.pk, leased.pk}


def test_sweep_is_bounded_and_oldest_first(start: Any, sent: list[dict[str, Any]], settings: Any) -> None:
    settings.FLEET_WORKFLOW_REDELIVER_SECONDS = 0
    started = [start(["done"]) for _ in range(5)]
    for age, run in enumerate(started):
        WorkflowRun.objects.filter(pk=run.pk).update(wake_at=Now() - dt.timedelta(minutes=age))
    sent.clear()

    assert sweep(limit=2) == 2
    assert [m["run"] for m in sent] == [started[4].pk, started[3].pk]
