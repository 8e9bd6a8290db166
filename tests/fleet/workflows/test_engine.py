"""advance() with every outcome, deadlines and cancellation, and what it says it did (Advanced)."""

import datetime as dt
from typing import Any

import pytest
from django.db.models.functions import Now
from django.utils import timezone

from fleet.audit.models import AuditEvent
from fleet.workflows import engine
from fleet.workflows.choices import Advanced, RunState, StepState
from fleet.workflows.engine import advance
from fleet.workflows.models import StepRun, WorkflowRun
from fleet.workflows.services import workflow_cancel
from tests.fleet.workflows.conftest import deliver, make_due, reload, steps_of

pytestmark = pytest.mark.django_db


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
