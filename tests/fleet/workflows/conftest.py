"""Fixtures for the workflow engine tests: scripted test workflows and a record of wake-up messages."""

import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db.models.functions import Now

from fleet.workflows import dispatch, engine
from fleet.workflows.choices import Advanced
from fleet.workflows.definitions import Step, Workflow, register
from fleet.workflows.models import StepRun, WorkflowRun
from fleet.workflows.outcomes import Done, Fail, Outcome, Retry, Wait
from fleet.workflows.services import workflow_start
from tests.support.services import Worker


def scripted(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Does what `ctx["plan"]` says for this call: done, wait, retry, fail, raise, slow, garbage."""
    calls = ctx.get("calls", 0)
    ctx["calls"] = calls + 1
    action = ctx["plan"][calls] if calls < len(ctx["plan"]) else "done"
    if action == "wait":
        return Wait(600, "node not Ready yet")
    if action == "retry":
        return Retry("API answered 503")
    if action == "retry_after":
        return Retry("throttled", after=42)
    if action == "fail":
        return Fail("serial unknown")
    if action == "raise":
        raise RuntimeError("boom")
    if action == "slow":
        time.sleep(0.15)
    if action == "garbage":
        return "done"  # type: ignore[return-value]
    if action == "unstorable":
        ctx["handle"] = object()
        return Done()
    if action == "done_soon":
        return Done({"soon": True}, after=0.5)
    if action == "done_later":
        return Done({"later": True}, after=600)
    if action == "soft_limit":
        raise SoftTimeLimitExceeded()
    return Done({f"done_{calls}": True})


def record_end(run: WorkflowRun) -> None:
    run.context.setdefault("hooks", [])
    WorkflowRun.objects.filter(pk=run.pk).update(context={**run.context, "ended_as": run.state})


SCRIPTED = register(
    Workflow(
        kind="unit.scripted",
        steps=[
            Step("first", scripted, timeout=0.1, max_attempts=3, retry_base=1, retry_cap=8),
            Step("second", scripted, queue="io", timeout=5),
        ],
        exclusive=True,
        on_finish=record_end,
    ),
    replace=True,
)


UNAUDITED = register(
    Workflow(kind="unit.unaudited", steps=[Step("first", scripted, timeout=5)], audited=False),
    replace=True,
)
LONG_STEP = register(
    Workflow(kind="unit.long_step", steps=[Step("first", scripted, timeout=30)], exclusive=False),
    replace=True,
)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Wake-up messages the engine and services sent (through dispatch.enqueue_advance, as Celery was
    handed them), instead of publishing them."""
    messages: list[dict[str, Any]] = []

    def send_task(name: str, args: list[Any], kwargs: dict[str, Any], **options: Any) -> None:
        messages.append({"run": args[0], "queue": options["queue"], "countdown": options.get("countdown")})
        if kwargs.get("lease_token"):
            messages[-1]["lease_token"] = kwargs["lease_token"]

    monkeypatch.setattr(dispatch.app, "send_task", send_task)
    return messages


@pytest.fixture
def start(sent: list[dict[str, Any]]) -> Any:
    """`start(plan=[...], subject=..., **kwargs)` starts a unit.scripted run (or `kind=`)."""

    def _start(plan: list[str] | None = None, *, kind: str = "unit.scripted", **kwargs: Any) -> WorkflowRun:
        kwargs.setdefault("subject", None)
        kwargs.setdefault("exclusive_key", None if kind != "unit.scripted" else f"test:{time.monotonic_ns()}")
        scripted_kind = kind in ("unit.scripted", "unit.long_step", "unit.unaudited")
        context = {"plan": plan or []} if scripted_kind else kwargs.pop("context", {})
        return workflow_start(kind=kind, actor="test", source="test", context=context, **kwargs)

    return _start


def deliver(run: WorkflowRun, worker_id: str = "w") -> Advanced:
    """What a worker does with the engine's wake-up message: advance the run, with the lease the
    previous step handed over (if any)."""
    owner = WorkflowRun.objects.filter(pk=run.pk).values_list("lease_owner", flat=True).first() or ""
    return engine.advance(run.pk, worker_id=worker_id, lease_token=owner if owner.startswith("handoff/") else None)


def reload(run: WorkflowRun) -> WorkflowRun:
    return WorkflowRun.objects.get(pk=run.pk)


def steps_of(run: WorkflowRun) -> list[tuple[str, int, str]]:
    """The run's timeline as (step, attempt, state), oldest first."""
    return list(StepRun.objects.filter(run=run).order_by("id").values_list("step", "attempt", "state"))


def make_due(run: WorkflowRun) -> None:
    """Let the clock run on: the run's wake-up time has come (and any lease has expired)."""
    WorkflowRun.objects.filter(pk=run.pk).update(wake_at=Now(), lease_until=None)


@pytest.fixture
def short_lease_worker(celery_worker: Worker) -> Iterator[Worker]:
    """The session's worker, restarted with a 3-second lease so a crash is recovered from in seconds."""
    with celery_worker.reconfigured(FLEET_WORKFLOW_LEASE_SECONDS="3") as worker:
        yield worker
