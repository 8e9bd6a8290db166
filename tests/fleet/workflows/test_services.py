"""Starting, cancelling and retrying runs: exclusivity at the database, audit, wake-up after commit."""

from typing import Any

import pytest
from django.db import IntegrityError, transaction

from fleet.audit.models import AuditEvent
from fleet.errors import Conflict, Invalid
from fleet.workflows import runs_of, selectors
from fleet.workflows.choices import Advanced, RunState
from fleet.workflows.models import WorkflowRun
from fleet.workflows.services import workflow_cancel, workflow_retry, workflow_start
from sites.models import Node
from tests.factories import NodeFactory, UserFactory
from tests.fleet.workflows.conftest import deliver, make_due

pytestmark = pytest.mark.django_db


def test_start_records_subject_actor_deadline_and_wakes_a_worker_after_commit(
    sent: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    node = NodeFactory(hostname="tx-a")
    user = UserFactory(username="alice")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = workflow_start(kind="unit.scripted", subject=node, actor=user, source="api", context={"plan": []})
        assert sent == []  # nothing is sent before the row is committed
    for callback in callbacks:
        callback()

    assert (run.subject_type, run.subject_id, run.subject_repr) == ("sites.node", str(node.pk), str(node))
    assert run.exclusive_key == f"node:{node.pk}"
    assert (run.state, run.current_step, run.created_by, run.created_by_repr) == ("pending", "first", user, "alice")
    assert run.deadline is not None
    assert sent == [{"run": run.pk, "queue": "control", "countdown": None}]
    event = AuditEvent.objects.get(verb="workflow_start", object_id=str(run.pk))
    assert (event.actor_repr, event.source, event.payload["kind"]) == ("alice", "api", "unit.scripted")


def test_unknown_kind_is_invalid(sent: list[dict[str, Any]]) -> None:
    with pytest.raises(Invalid, match="unknown workflow kind 'nope'"):
        workflow_start(kind="nope", subject=None, actor="test", source="test")


def test_exclusive_kind_needs_a_subject_or_a_key(sent: list[dict[str, Any]]) -> None:
    with pytest.raises(Invalid, match="exclusive"):
        workflow_start(kind="unit.scripted", subject=None, actor="test", source="test")


def test_a_second_exclusive_run_is_refused_naming_the_active_one(start: Any) -> None:
    node = NodeFactory()
    first = start(["wait"], subject=node, exclusive_key=None)
    deliver(first)

    with transaction.atomic():  # the caller's transaction survives the refusal
        with pytest.raises(Conflict) as refused:
            start(["done"], subject=node, exclusive_key=None)
        assert WorkflowRun.objects.filter(pk=first.pk).exists()

    assert refused.value.status_code == 409
    assert refused.value.message == (
        f"unit.scripted run {first.pk} is waiting at step first on node:{node.pk}: one active run at a time"
    )
    assert WorkflowRun.objects.filter(subject_id=str(node.pk)).count() == 1


def test_the_database_itself_refuses_two_active_runs_with_one_key(start: Any) -> None:
    run = start(["done"], exclusive_key="site:TX-1")
    duplicate = WorkflowRun(kind="unit.scripted", exclusive_key="site:TX-1", state=RunState.WAITING)
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save()
    assert selectors.active_run_for_key("site:TX-1") == run


def test_the_key_is_free_again_once_the_run_ends(start: Any) -> None:
    node = NodeFactory()
    first = start(["fail"], subject=node, exclusive_key=None)
    deliver(first)

    second = start(["done"], subject=node, exclusive_key=None)

    assert second.exclusive_key == first.exclusive_key
    assert list(selectors.runs_for_subject("sites.node", node.pk)) == [second, first]


def test_the_runs_of_a_queryset_of_subjects_are_read_in_one_query(start: Any, django_assert_num_queries: Any) -> None:
    """`runs_of(queryset)`: what the rollout driver asks for a rollout's thousands of site rollouts."""
    first, second, other = NodeFactory(), NodeFactory(), NodeFactory()
    runs = [start(["done"], subject=node) for node in (first, second, other, first)]

    with django_assert_num_queries(1):
        found = list(runs_of(Node.objects.filter(pk__in=[first.pk, second.pk])))

    assert found == [runs[3], runs[1], runs[0]]  # newest first; the other node's run is not among them
    assert list(runs_of(Node.objects.none())) == []


def test_cancelling_an_ended_run_is_a_conflict_naming_its_state(start: Any) -> None:
    run = start(["fail"])
    deliver(run)

    with pytest.raises(Conflict, match=f"workflow run {run.pk} \\(unit.scripted\\) is failed"):
        workflow_cancel(run=run, actor="test", source="test", reason="x")


def test_cancel_is_audited_once(start: Any) -> None:
    run = start(["wait"])
    workflow_cancel(run=run, actor="bob", source="admin", reason="wrong site")
    run = workflow_cancel(run=run, actor="bob", source="admin", reason="again")

    assert run.cancel_requested and run.cancel_reason == "wrong site"
    assert AuditEvent.objects.filter(verb="workflow_cancel", object_id=str(run.pk)).count() == 1


def test_retry_restarts_a_failed_run_at_the_failed_step(start: Any) -> None:
    run = start(["done", "fail", "done"])
    deliver(run)
    assert deliver(run) == Advanced.FINISHED

    run = workflow_retry(run=run, actor="test", source="test")

    assert (run.state, run.current_step, run.attempt, run.error) == (RunState.PENDING, "second", 0, "")
    make_due(run)
    assert deliver(run) == Advanced.FINISHED
    assert WorkflowRun.objects.get(pk=run.pk).state == RunState.SUCCEEDED


def test_retry_refuses_a_run_that_did_not_fail(start: Any) -> None:
    run = start(["wait"])
    with pytest.raises(Conflict, match="only a failed run is retried"):
        workflow_retry(run=run, actor="test", source="test")


def test_retry_refuses_when_another_run_took_the_key(start: Any) -> None:
    node = NodeFactory()
    failed = start(["fail"], subject=node, exclusive_key=None)
    deliver(failed)
    newer = start(["wait"], subject=node, exclusive_key=None)

    with pytest.raises(Conflict, match=f"run {newer.pk} is pending"):
        workflow_retry(run=failed, actor="test", source="test")
    assert WorkflowRun.objects.get(pk=failed.pk).state == RunState.FAILED
