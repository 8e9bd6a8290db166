"""Built-in workflow kinds, harmless in production: they touch nothing but their own run.

- `noop`: five steps that each return Done at once. The benchmark (bench/engine.py) and the tests use it
  to measure and exercise the engine itself.
- `demo.sleepless_wait`: waits `ctx["seconds"]` (default 2) without a worker sleeping, then finishes:
  shows (and tests) that a Wait is a stored wake-up, not a blocked worker.
"""

from typing import Any

from fleet.workflows.definitions import Step, Workflow, register
from fleet.workflows.models import WorkflowRun
from fleet.workflows.outcomes import Done, Outcome, Wait

NOOP_STEPS = 5


def noop_step(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    return Done()


NOOP = register(
    Workflow(
        kind="noop",
        steps=[Step(f"noop{n}", noop_step, timeout=10) for n in range(1, NOOP_STEPS + 1)],
        description="five steps that do nothing (benchmark and tests)",
    )
)


def wait_once(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Wait the first time, finish the second: the marker in the context says which time this is."""
    if ctx.get("waited"):
        return Done()
    ctx["waited"] = True
    return Wait(float(ctx.get("seconds", 2)), "waiting without a worker sleeping")


SLEEPLESS_WAIT = register(
    Workflow(
        kind="demo.sleepless_wait",
        steps=[Step("wait", wait_once, timeout=10), Step("finish", noop_step, timeout=10)],
        description="waits ctx['seconds'] through the sweeper, then finishes",
    )
)
