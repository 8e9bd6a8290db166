"""Fixtures for the workflow engine tests: scripted test workflows and a record of wake-up messages."""

import time
from typing import Any

import pytest
from django.db.models.functions import Now

from fleet.workflows import engine
from fleet.workflows.definitions import Step, Workflow, register
from fleet.workflows.models import WorkflowRun
from fleet.workflows.outcomes import Done, Fail, Outcome, Retry, Wait
from fleet.workflows.services import workflow_start


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


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Wake-up messages the engine and services asked for, instead of publishing them."""
    messages: list[dict[str, Any]] = []

    def enqueue(run_id: int, *, queue: str, step_timeout: float, countdown: float | None = None) -> bool:
        messages.append({"run": run_id, "queue": queue, "countdown": countdown})
        return True

    monkeypatch.setattr(engine, "enqueue_advance", enqueue)
    return messages


@pytest.fixture
def start(sent: list[dict[str, Any]]) -> Any:
    """`start(plan=[...], subject=..., **kwargs)` starts a unit.scripted run (or `kind=`)."""

    def _start(plan: list[str] | None = None, *, kind: str = "unit.scripted", **kwargs: Any) -> WorkflowRun:
        kwargs.setdefault("subject", None)
        kwargs.setdefault("exclusive_key", None if kind != "unit.scripted" else f"test:{time.monotonic_ns()}")
        context = {"plan": plan or []} if kind == "unit.scripted" else kwargs.pop("context", {})
        return workflow_start(kind=kind, actor="test", source="test", context=context, **kwargs)

    return _start


def make_due(run: WorkflowRun) -> None:
    """Let the clock run on: the run's wake-up time has come (and any lease has expired)."""
    WorkflowRun.objects.filter(pk=run.pk).update(wake_at=Now(), lease_until=None)
