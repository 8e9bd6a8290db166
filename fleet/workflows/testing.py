"""Workflow kinds for the engine's own tests, registered only when FLEET_ENV=test (see apps.py).

They live in the package, not in the tests, because the tests' real Celery worker must know them too.
The steps wait on files the test controls, with short polls bounded by the step's timeout: acceptable
in a test, never in a real step (a real step returns Wait).
"""

import os
import time
from pathlib import Path
from typing import Any

from fleet.workflows.definitions import Step, Workflow, register
from fleet.workflows.models import WorkflowRun
from fleet.workflows.outcomes import Done, Outcome, Retry

POLL_SECONDS = 0.05
BLOCK_TIMEOUT = 2.0


def block_until_released(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Log the attempt, block until `<dir>/release` exists (or give up just before the timeout), then
    cause the side effect once: creating `<dir>/effect` exclusively is the idempotency marker."""
    directory = Path(ctx["dir"])
    with (directory / "attempts").open("a") as attempts:
        attempts.write(f"{os.getpid()}\n")
    give_up = time.monotonic() + BLOCK_TIMEOUT * 0.75
    while not (directory / "release").exists():
        if time.monotonic() > give_up:
            return Retry("not released yet", after=0.1)
        time.sleep(POLL_SECONDS)
    try:
        with (directory / "effect").open("x") as effect:  # exclusive create: the marker
            effect.write(f"{run.pk}\n")
    except FileExistsError:
        pass  # done by an earlier attempt: running the step twice leaves the world as running it once
    return Done({"effect": str(directory / "effect")})


def finish(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    return Done()


register(
    Workflow(
        kind="test.block_on_file",
        steps=[Step("block", block_until_released, timeout=BLOCK_TIMEOUT, max_attempts=100), Step("finish", finish)],
        description="test only: blocks on a file the test creates",
    )
)
