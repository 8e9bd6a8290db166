"""advance() with every outcome, the lease, deadlines, cancellation, backoff and the sweeper."""

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.db.models.functions import Now
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from fleet.audit.models import AuditEvent
from fleet.workflows import engine, runs
from fleet.workflows.choices import Advanced, RunState, StepState
from fleet.workflows.engine import advance, sweep
from fleet.workflows.models import StepRun, WorkflowRun
from fleet.workflows.services import workflow_cancel
from fleet.workflows.timing import backoff_delay
from tests.fleet.workflows.conftest import deliver, make_due

pytestmark = pytest.mark.django_db


def steps_of(run: WorkflowRun) -> list[tuple[str, int, str]]:
    return list(StepRun.objects.filter(run=run).order_by("id").values_list("step", "attempt", "state"))


def reload(run: WorkflowRun) -> WorkflowRun:
    return WorkflowRun.objects.get(pk=run.pk)


# --- outcomes ---------------------------------------------------------------------------------------


def test_done_runs_every_step_and_merges_data_into_the_context(start: Any, sent: list[dict[str, Any]]) -> None:
    run = start(["done", "done"])

    assert deliver(run) == Advanced.DONE
    middle = reload(run)
    assert (middle.state, middle.current_step, middle.step_index) == (RunState.RUNNING, "second", 1)
    assert deliver(run) == Advanced.FINISHED

    run = reload(run)
    assert run.state == RunState.SUCCEEDED
    assert run.finished_at is not None and run.lease_owner == "" and run.lease_until is None
    assert run.context["done_0"] is True and run.context["done_1"] is True
    assert run.context["ended_as"] == RunState.SUCCEEDED  # on_finish ran in the recording transaction
    assert steps_of(run) == [("first", 1, StepState.DONE), ("second", 1, StepState.DONE)]
    assert StepRun.objects.get(run=run, step="first").result == {"done_0": True}
    assert AuditEvent.objects.filter(object_id=str(run.pk), verb="workflow_succeeded").exists()


@pytest.mark.parametrize(
    ("plan", "advanced", "run_state", "step_state"),
    [
        (["done"], Advanced.DONE, RunState.RUNNING, StepState.DONE),  # moved on, the next step leased
        (["wait"], Advanced.WAITING, RunState.WAITING, StepState.WAITING),
        (["retry"], Advanced.RETRYING, RunState.WAITING, StepState.RETRYING),
        (["raise"], Advanced.RETRYING, RunState.WAITING, StepState.RETRYING),
        (["slow"], Advanced.RETRYING, RunState.WAITING, StepState.TIMED_OUT),
        (["fail"], Advanced.FINISHED, RunState.FAILED, StepState.FAILED),
    ],
)
def test_advance_says_what_it_did_in_one_word(
    start: Any, plan: list[str], advanced: Advanced, run_state: str, step_state: str
) -> None:
    run = start(plan)

    assert deliver(run) == advanced

    assert reload(run).state == run_state
    assert steps_of(run) == [("first", 1, step_state)]


def test_advance_says_not_due_and_lease_lost(start: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    waiting = start(["wait"])
    deliver(waiting)
    assert deliver(waiting) == Advanced.NOT_DUE

    run = start(["done"])
    real = engine.execute

    def lose_the_lease(run_: WorkflowRun, step: Any) -> Any:
        WorkflowRun.objects.filter(pk=run_.pk).update(lease_owner="w2/other")
        return real(run_, step)

    monkeypatch.setattr(engine, "execute", lose_the_lease)
    assert deliver(run) == Advanced.LEASE_LOST


def test_a_kind_that_is_not_audited_leaves_its_story_on_the_run_only(start: Any) -> None:
    audited, quiet = start(["done", "done"]), start(["done"], kind="unit.unaudited")
    while deliver(audited) != Advanced.FINISHED:
        pass
    assert deliver(quiet) == Advanced.FINISHED

    def verbs(run: WorkflowRun) -> set[str]:
        events = AuditEvent.objects.filter(object_type="workflows.workflowrun", object_id=str(run.pk))
        return set(events.values_list("verb", flat=True))

    assert (verbs(audited), verbs(quiet)) == ({"workflow_start", "workflow_succeeded"}, set())
    assert steps_of(quiet) == [("first", 1, StepState.DONE)]


def test_done_wakes_the_next_step_on_its_own_queue_after_commit(
    start: Any, sent: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    run = start(["done"])
    sent.clear()

    with django_capture_on_commit_callbacks(execute=True):
        deliver(run)

    assert sent == [{"run": run.pk, "queue": "io", "countdown": None, "lease_token": sent[0]["lease_token"]}]


def test_done_after_makes_the_next_step_due_later_without_a_lease(
    start: Any, sent: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    run = start(["done_later"])
    sent.clear()

    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(run) == Advanced.DONE

    run = reload(run)
    assert (run.state, run.current_step, run.step_index, run.attempt) == (RunState.WAITING, "second", 1, 0)
    assert run.wake_at is not None and run.wake_at > timezone.now() + dt.timedelta(seconds=590)
    assert run.lease_owner == "" and run.lease_until is None and run.enqueued_at is None
    assert run.context["later"] is True
    assert sent == []  # as long as a Wait that long: the sweeper's business
    assert advance(run.pk, worker_id="w") == Advanced.NOT_DUE
    make_due(run)
    assert deliver(run) == Advanced.FINISHED
    assert steps_of(run) == [("first", 1, StepState.DONE), ("second", 1, StepState.DONE)]


def test_done_after_a_moment_hands_the_lease_over_in_a_delayed_message(
    start: Any, sent: list[dict[str, Any]], django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    run = start(["done_soon"])
    sent.clear()

    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(run) == Advanced.DONE

    token = sent[0]["lease_token"]
    assert sent == [{"run": run.pk, "queue": "io", "countdown": 0.5, "lease_token": token}]
    run = reload(run)
    assert (run.state, run.current_step, run.attempt, run.lease_owner) == (RunState.RUNNING, "second", 1, token)
    assert run.wake_at is not None and run.lease_until is not None
    # Leased from now until a full lease after it is due: the sweeper leaves it to that message.
    assert run.lease_until - run.wake_at >= dt.timedelta(seconds=settings.FLEET_WORKFLOW_LEASE_SECONDS)
    assert advance(run.pk, worker_id="other") == Advanced.NOT_DUE  # no one else can take it meanwhile

    # Delivered early (a clock a second and more behind), the message finds it not due yet.
    WorkflowRun.objects.filter(pk=run.pk).update(wake_at=Now() + dt.timedelta(seconds=30))
    assert advance(run.pk, worker_id="early", lease_token=token) == Advanced.NOT_DUE
    WorkflowRun.objects.filter(pk=run.pk).update(wake_at=Now())
    with django_capture_on_commit_callbacks(execute=True):
        assert advance(run.pk, worker_id="receiver", lease_token=token) == Advanced.FINISHED
    assert steps_of(run) == [("first", 1, StepState.DONE), ("second", 1, StepState.DONE)]


def test_wait_stores_a_wake_up_and_sends_no_message(
    start: Any, sent: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    run = start(["wait", "done"])
    sent.clear()

    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(run) == Advanced.WAITING

    run = reload(run)
    assert run.state == RunState.WAITING
    assert run.wake_at is not None and run.wake_at > timezone.now() + dt.timedelta(seconds=590)
    assert run.attempt == 0 and run.enqueued_at is None
    assert sent == []  # a long wait is the sweeper's business, never a Celery countdown
    assert steps_of(run) == [("first", 1, StepState.WAITING)]
    assert StepRun.objects.get(run=run).message == "node not Ready yet"


def test_advance_is_idempotent_while_a_run_is_not_due(start: Any) -> None:
    run = start(["wait", "done"])
    deliver(run)

    assert deliver(run) == Advanced.NOT_DUE
    assert deliver(run) == Advanced.NOT_DUE
    assert StepRun.objects.filter(run=run).count() == 1

    make_due(run)
    assert deliver(run) == Advanced.DONE
    assert reload(run).context["calls"] == 2


def test_retry_backs_off_then_fails_the_run_after_max_attempts(start: Any) -> None:
    run = start(["retry", "retry", "retry"])

    assert deliver(run) == Advanced.RETRYING
    retrying = reload(run)
    assert retrying.state == RunState.WAITING and retrying.attempt == 1
    assert retrying.wake_at is not None and retrying.wake_at <= timezone.now() + dt.timedelta(seconds=1.1)
    make_due(run)
    assert deliver(run) == Advanced.RETRYING
    make_due(run)
    assert deliver(run) == Advanced.FINISHED

    run = reload(run)
    assert run.state == RunState.FAILED
    assert run.error == "step first failed after 3 attempts: API answered 503"
    assert run.current_step == "first"
    assert steps_of(run) == [
        ("first", 1, StepState.RETRYING),
        ("first", 2, StepState.RETRYING),
        ("first", 3, StepState.RETRYING),
    ]
    assert run.context["ended_as"] == RunState.FAILED


def test_retry_after_uses_the_given_delay(start: Any) -> None:
    run = start(["retry_after"])
    deliver(run)
    wake_in = (reload(run).wake_at - timezone.now()).total_seconds()  # type: ignore[operator]
    assert 40 < wake_in <= 42


def test_fail_ends_the_run_with_the_reason(start: Any) -> None:
    run = start(["fail"])

    assert deliver(run) == Advanced.FINISHED

    run = reload(run)
    assert (run.state, run.error) == (RunState.FAILED, "serial unknown")
    assert steps_of(run) == [("first", 1, StepState.FAILED)]


def test_an_exception_is_a_retry_with_its_traceback_kept(start: Any) -> None:
    run = start(["raise", "done", "done"])

    assert deliver(run) == Advanced.RETRYING

    step = StepRun.objects.get(run=run)
    assert step.message == "RuntimeError: boom"
    assert "Traceback" in step.error and "boom" in step.error
    make_due(run)
    assert deliver(run) == Advanced.DONE


def test_a_step_returning_something_else_is_a_retry(start: Any) -> None:
    run = start(["garbage"])
    assert deliver(run) == Advanced.RETRYING
    assert "not Done, Wait, Retry or Fail" in StepRun.objects.get(run=run).message


def test_a_context_that_is_not_json_is_a_retry_and_is_not_stored(start: Any) -> None:
    run = start(["unstorable"])
    assert deliver(run) == Advanced.RETRYING
    run = reload(run)
    assert "handle" not in run.context and "calls" not in run.context
    assert "not JSON serializable" in StepRun.objects.get(run=run).message


def test_celerys_soft_time_limit_is_a_timed_out_attempt(start: Any) -> None:
    run = start(["soft_limit"])
    assert deliver(run) == Advanced.RETRYING
    assert StepRun.objects.get(run=run).message == "step first timed out after 0.1 s"


def test_a_short_wait_is_also_sent_with_a_countdown(
    start: Any, sent: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    run = start(kind="demo.sleepless_wait", context={"seconds": 1})
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(run) == Advanced.WAITING
    assert sent == [{"run": run.pk, "queue": "control", "countdown": 1.0}]
    assert reload(run).enqueued_at is not None  # the sweeper leaves it to that message


def test_a_step_over_its_timeout_is_timed_out_and_retried(start: Any) -> None:
    run = start(["slow", "done"])

    assert deliver(run) == Advanced.RETRYING

    run = reload(run)
    assert run.state == RunState.WAITING and run.step_index == 0
    assert steps_of(run) == [("first", 1, StepState.TIMED_OUT)]
    assert "over its 0.1 s timeout" in StepRun.objects.get(run=run).message


def test_a_run_past_its_deadline_fails_before_its_step(start: Any) -> None:
    run = start(["done"])
    WorkflowRun.objects.filter(pk=run.pk).update(deadline=timezone.now() - dt.timedelta(seconds=1))

    assert deliver(run) == Advanced.FINISHED

    run = reload(run)
    assert run.error.startswith("deadline") and "before step first" in run.error
    assert "calls" not in run.context  # the step did not run


def test_a_wait_past_the_deadline_wakes_at_the_deadline(start: Any) -> None:
    deadline = timezone.now() + dt.timedelta(seconds=30)
    run = start(["wait"], deadline=deadline)
    deliver(run)
    assert reload(run).wake_at == deadline


def test_unknown_kind_fails_the_run(start: Any) -> None:
    run = start(["done"])
    WorkflowRun.objects.filter(pk=run.pk).update(kind="gone.kind")
    assert deliver(run) == Advanced.FINISHED
    assert reload(run).error == "unknown workflow kind 'gone.kind'"


# --- cancellation -----------------------------------------------------------------------------------


def test_cancelling_a_waiting_run_ends_it_at_its_next_advance(
    start: Any, sent: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    run = start(["wait", "done"])
    deliver(run)
    sent.clear()

    with django_capture_on_commit_callbacks(execute=True):
        workflow_cancel(run=run, actor="test", source="test", reason="wrong node")
    assert sent == [{"run": run.pk, "queue": "control", "countdown": None}]  # woken at once, not at wake_at
    assert deliver(run) == Advanced.FINISHED

    run = reload(run)
    assert (run.state, run.error) == (RunState.CANCELLED, "cancelled: wrong node")
    assert run.context["calls"] == 1  # the step did not run again
    assert steps_of(run)[-1] == ("first", 1, StepState.CANCELLED)
    assert run.context["ended_as"] == RunState.CANCELLED


def test_a_cancel_during_a_step_is_acted_on_when_it_returns(start: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    run = start(["wait"])
    real_run_step = engine.execute

    def cancel_meanwhile(run_: WorkflowRun, step: Any) -> Any:
        workflow_cancel(run=run_, actor="test", source="test", reason="meanwhile")
        return real_run_step(run_, step)

    monkeypatch.setattr(engine, "execute", cancel_meanwhile)
    deliver(run)
    monkeypatch.undo()

    waiting = reload(run)
    assert waiting.wake_at is not None and waiting.wake_at <= timezone.now()  # not in 10 minutes
    assert deliver(run) == Advanced.FINISHED


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


def test_done_hands_the_next_steps_lease_to_its_message(
    start: Any, sent: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    run = start(["done", "done"])
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        deliver(run)
    token = sent[0]["lease_token"]

    assert advance(run.pk, worker_id="intruder") == Advanced.NOT_DUE  # leased for the message's receiver
    assert advance(run.pk, worker_id="receiver", lease_token=token) == Advanced.FINISHED
    assert advance(run.pk, worker_id="again", lease_token=token) == Advanced.NOT_DUE  # a duplicate does nothing
    assert steps_of(run) == [("first", 1, StepState.DONE), ("second", 1, StepState.DONE)]


def test_a_handed_over_lease_that_expired_is_not_used(
    start: Any, sent: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    run = start(["done", "done"])
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        deliver(run)
    token = sent[0]["lease_token"]
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
    runs = [start(["done"]) for _ in range(5)]
    for age, run in enumerate(runs):
        WorkflowRun.objects.filter(pk=run.pk).update(wake_at=timezone.now() - dt.timedelta(minutes=age))
    sent.clear()

    assert sweep(limit=2) == 2
    assert [m["run"] for m in sent] == [runs[4].pk, runs[3].pk]
