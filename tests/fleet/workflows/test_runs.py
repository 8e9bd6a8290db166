"""fleet/workflows/runs.py: each function's one-line contract, on the database's clock.

Times are checked against `updated_at`, which every statement sets to the database's clock in the same
statement, so no test compares a Python clock with a stored time.
"""

import datetime as dt
from typing import Any

import pytest
from django.db.models.functions import Now

from fleet.workflows import runs
from fleet.workflows.choices import RunState
from fleet.workflows.models import WorkflowRun

pytestmark = pytest.mark.django_db

SECOND = dt.timedelta(seconds=1)


def reload(run: WorkflowRun) -> WorkflowRun:
    return WorkflowRun.objects.get(pk=run.pk)


def set_row(run: WorkflowRun, **fields: Any) -> WorkflowRun:
    WorkflowRun.objects.filter(pk=run.pk).update(**fields)
    return reload(run)


def gap(later: dt.datetime | None, earlier: dt.datetime | None) -> float:
    """Seconds from `earlier` to `later`, two times stored by the database."""
    assert later is not None and earlier is not None
    return (later - earlier).total_seconds()


@pytest.fixture
def run(start: Any) -> WorkflowRun:
    """A unit.scripted run, just started (due, unleased, its start message in flight)."""
    return reload(start(["done", "done"]))


# --- claim ------------------------------------------------------------------------------------------


def test_claim_takes_a_due_unleased_run_for_the_given_seconds_and_counts_an_attempt(run: WorkflowRun) -> None:
    claimed = runs.claim(run.pk, "w/1", 42.0)

    assert claimed is not None
    assert (claimed.state, claimed.lease_owner, claimed.attempt, claimed.enqueued_at) == ("running", "w/1", 1, None)
    assert claimed.lease_left == pytest.approx(42.0, abs=0.5)  # computed by the database, not by this process
    assert gap(claimed.lease_until, claimed.updated_at) == pytest.approx(42.0, abs=0.01)
    assert claimed.started_at is not None and not claimed.overdue


def test_claim_refuses_a_run_leased_by_someone_else_until_the_lease_expires(run: WorkflowRun) -> None:
    assert runs.claim(run.pk, "w/1", 30.0) is not None
    assert runs.claim(run.pk, "w/2", 30.0) is None

    set_row(run, lease_until=Now() - SECOND)  # the first worker died
    taken = runs.claim(run.pk, "w/2", 30.0)
    assert taken is not None and (taken.lease_owner, taken.attempt) == ("w/2", 2)


def test_claim_refuses_a_run_that_is_not_due_or_has_ended(run: WorkflowRun) -> None:
    set_row(run, wake_at=Now() + dt.timedelta(seconds=30))
    assert runs.claim(run.pk, "w/1", 30.0) is None
    set_row(run, wake_at=Now(), state=RunState.SUCCEEDED)
    assert runs.claim(run.pk, "w/1", 30.0) is None
    assert reload(run).attempt == 0


def test_claim_says_whether_the_deadline_has_passed_by_the_databases_clock(run: WorkflowRun) -> None:
    set_row(run, deadline=Now() - SECOND)
    claimed = runs.claim(run.pk, "w/1", 30.0)
    assert claimed is not None and claimed.overdue


# --- claim_handed_over ------------------------------------------------------------------------------


def handed_over(run: WorkflowRun, *, delay: float = 0.0, lease: float = 30.0) -> str:
    runs.claim(run.pk, "w/1", 30.0)
    assert runs.move_on_now(
        reload(run), "w/1", step_index=1, step_name="second", handover="handoff/t", lease_seconds=lease, delay=delay
    )
    return "handoff/t"


def test_claim_handed_over_reads_the_run_for_its_token_without_writing(run: WorkflowRun) -> None:
    token = handed_over(run)
    before = reload(run)

    claimed = runs.claim_handed_over(run.pk, token)

    assert claimed is not None and claimed.lease_owner == token and claimed.lease_left > 29.0
    after = reload(run)
    assert (after.attempt, after.updated_at, after.lease_until) == (1, before.updated_at, before.lease_until)
    assert runs.claim_handed_over(run.pk, "handoff/other") is None


def test_claim_handed_over_refuses_an_expired_lease_or_a_run_not_yet_due(run: WorkflowRun) -> None:
    token = handed_over(run, delay=30.0)
    assert runs.claim_handed_over(run.pk, token) is None  # delivered 30 s early

    set_row(run, wake_at=Now(), lease_until=Now() - SECOND)
    assert runs.claim_handed_over(run.pk, token) is None  # its message was lost; the sweeper takes over


# --- extend -----------------------------------------------------------------------------------------


def test_extend_lengthens_only_our_own_unexpired_lease(run: WorkflowRun) -> None:
    runs.claim(run.pk, "w/1", 5.0)

    assert runs.extend(run.pk, "w/1", 60.0)
    extended = reload(run)
    assert gap(extended.lease_until, extended.updated_at) > 59.0
    assert not runs.extend(run.pk, "w/2", 60.0)
    set_row(run, lease_until=Now() - SECOND)
    assert not runs.extend(run.pk, "w/1", 60.0)


# --- move on ----------------------------------------------------------------------------------------


def test_move_on_now_points_at_the_next_step_leased_to_the_message_and_counts_its_attempt(run: WorkflowRun) -> None:
    claimed = runs.claim(run.pk, "w/1", 30.0)
    assert claimed is not None
    claimed.context["marker"] = 1

    assert runs.move_on_now(
        claimed, "w/1", step_index=1, step_name="second", handover="handoff/x", lease_seconds=20.0, delay=3.0
    )

    moved = reload(run)
    assert (moved.state, moved.step_index, moved.current_step, moved.attempt) == ("running", 1, "second", 1)
    assert (moved.lease_owner, moved.context["marker"]) == ("handoff/x", 1)
    assert gap(moved.wake_at, moved.updated_at) == pytest.approx(3.0, abs=0.01)
    assert gap(moved.lease_until, moved.wake_at) == pytest.approx(20.0, abs=0.01)  # a full lease once due
    assert moved.enqueued_at == moved.updated_at  # the message is sent now (with its countdown)


def test_move_on_later_leaves_the_next_step_unleased_for_the_sweeper(run: WorkflowRun) -> None:
    claimed = runs.claim(run.pk, "w/1", 30.0)
    assert claimed is not None

    assert runs.move_on_later(claimed, "w/1", step_index=1, step_name="second", delay=600.0)

    moved = reload(run)
    assert (moved.state, moved.current_step, moved.attempt, moved.lease_owner) == ("waiting", "second", 0, "")
    assert (moved.lease_until, moved.enqueued_at) == (None, None)
    assert gap(moved.wake_at, moved.updated_at) == pytest.approx(600.0, abs=0.01)


def test_recording_needs_the_lease(run: WorkflowRun) -> None:
    claimed = runs.claim(run.pk, "w/1", 30.0)
    assert claimed is not None
    set_row(run, lease_owner="w/2")  # taken over meanwhile

    assert not runs.move_on_now(
        claimed, "w/1", step_index=1, step_name="second", handover="handoff/x", lease_seconds=20, delay=0
    )
    assert not runs.move_on_later(claimed, "w/1", step_index=1, step_name="second", delay=0)
    assert not runs.park(claimed, "w/1", delay=1, progress=True, message_sent=True)
    assert not runs.finish(claimed, "w/1", state=RunState.FAILED, error="x", step_index=0, current_step="first")
    assert reload(run).step_index == 0 and reload(run).state == RunState.RUNNING


# --- park -------------------------------------------------------------------------------------------


def test_park_after_a_wait_releases_the_lease_and_counts_attempts_again(run: WorkflowRun) -> None:
    runs.claim(run.pk, "w/1", 30.0)
    runs.claim(run.pk, "w/1", 30.0)  # refused: leased; the attempt stays 1
    claimed = set_row(run, attempt=3)  # as after two lost attempts

    assert runs.park(claimed, "w/1", delay=2.0, progress=True, message_sent=True)

    parked = reload(run)
    assert (parked.state, parked.attempt, parked.lease_owner, parked.lease_until) == ("waiting", 0, "", None)
    assert gap(parked.wake_at, parked.updated_at) == pytest.approx(2.0, abs=0.01)
    assert parked.enqueued_at == parked.updated_at  # sent now, not "the time it is due"


def test_park_after_a_retry_keeps_the_attempts_and_without_a_message_leaves_none_in_flight(run: WorkflowRun) -> None:
    runs.claim(run.pk, "w/1", 30.0)
    assert runs.park(reload(run), "w/1", delay=120.0, progress=False, message_sent=False)
    parked = reload(run)
    assert (parked.attempt, parked.enqueued_at) == (1, None)


def test_park_wakes_at_the_deadline_when_it_comes_first(run: WorkflowRun) -> None:
    deadline = set_row(run, deadline=Now() + dt.timedelta(seconds=30)).deadline
    runs.claim(run.pk, "w/1", 30.0)
    assert runs.park(reload(run), "w/1", delay=600.0, progress=True, message_sent=False)
    assert reload(run).wake_at == deadline


def test_park_makes_a_run_due_at_once_when_a_cancel_came_in_meanwhile(run: WorkflowRun) -> None:
    runs.claim(run.pk, "w/1", 30.0)
    assert runs.request_cancel(run.pk, "meanwhile")
    assert runs.park(reload(run), "w/1", delay=600.0, progress=True, message_sent=False)
    parked = reload(run)
    assert parked.wake_at == parked.updated_at


# --- finish -----------------------------------------------------------------------------------------


def test_finish_ends_the_run_and_clears_every_timing_column(run: WorkflowRun) -> None:
    claimed = runs.claim(run.pk, "w/1", 30.0)
    assert claimed is not None

    assert runs.finish(claimed, "w/1", state=RunState.SUCCEEDED, error="", step_index=2, current_step="")

    ended = reload(run)
    assert (ended.state, ended.step_index, ended.current_step) == ("succeeded", 2, "")
    assert (ended.wake_at, ended.enqueued_at, ended.lease_owner, ended.lease_until) == (None, None, "", None)
    assert ended.finished_at == ended.updated_at


def test_finish_refuses_a_move_the_transition_table_does_not_allow(run: WorkflowRun) -> None:
    # `succeeded` comes only from `running` (RUN_TRANSITIONS): a waiting run that still names the token
    # (a row edited by hand, or a bug) is not ended by it.
    waiting = set_row(run, state=RunState.WAITING, lease_owner="w/1", lease_until=Now() + dt.timedelta(seconds=30))

    assert not runs.finish(waiting, "w/1", state=RunState.SUCCEEDED, error="", step_index=2, current_step="")
    assert runs.finish(waiting, "w/1", state=RunState.FAILED, error="gone", step_index=0, current_step="first")
    assert reload(run).state == RunState.FAILED


# --- waking -----------------------------------------------------------------------------------------


def test_make_due_wakes_a_waiting_run_once_and_leaves_a_running_one_alone(run: WorkflowRun) -> None:
    waiting = set_row(run, state=RunState.WAITING, wake_at=Now() + dt.timedelta(hours=1), enqueued_at=None)

    assert runs.make_due(waiting.pk)
    woken = reload(run)
    assert woken.wake_at == woken.enqueued_at == woken.updated_at
    assert not runs.make_due(waiting.pk)  # already due with a message on its way: one message serves both

    runs.claim(run.pk, "w/1", 30.0)
    assert not runs.make_due(run.pk)


def test_request_cancel_is_taken_once_and_never_for_an_ended_run(run: WorkflowRun) -> None:
    set_row(run, wake_at=Now() + dt.timedelta(hours=1))

    assert runs.request_cancel(run.pk, "wrong node")
    assert not runs.request_cancel(run.pk, "again")
    cancelled = reload(run)
    assert (cancelled.cancel_requested, cancelled.cancel_reason) == (True, "wrong node")
    assert cancelled.wake_at == cancelled.updated_at  # due now

    ended = set_row(run, state=RunState.CANCELLED, cancel_requested=False)
    assert not runs.request_cancel(ended.pk, "too late")


def test_restart_makes_a_failed_run_pending_at_its_step_with_a_fresh_deadline(run: WorkflowRun) -> None:
    failed = set_row(run, state=RunState.FAILED, attempt=4, error="boom", step_index=1, current_step="second")

    assert runs.restart(failed.pk, deadline_seconds=3600)

    restarted = reload(run)
    assert (restarted.state, restarted.attempt, restarted.error, restarted.current_step) == ("pending", 0, "", "second")
    assert gap(restarted.deadline, restarted.updated_at) == pytest.approx(3600, abs=1)
    assert restarted.wake_at == restarted.updated_at
    assert not runs.restart(failed.pk, deadline_seconds=3600)  # pending now: nothing to restart


def test_mark_sent_stamps_the_sweepers_messages(run: WorkflowRun, start: Any) -> None:
    other = start(["done"])
    set_row(run, enqueued_at=None)
    set_row(other, enqueued_at=None)

    runs.mark_sent([run.pk, other.pk])

    assert None not in WorkflowRun.objects.filter(pk__in=[run.pk, other.pk]).values_list("enqueued_at", flat=True)
