"""Running one attempt at a step, with no transaction open, and saying what it gave.

Whatever the step does, the attempt ends as one of the four outcomes: an exception, a Celery soft time
limit, an answer that is not an outcome, a context that is not JSON, or an answer that came after the
step's timeout all become a Retry (with what the timeline should show). Only a lost process escapes,
and the lease covers that.
"""

import datetime as dt
import json
import logging
import time
import traceback
from dataclasses import dataclass
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from fleet.workflows.choices import StepState
from fleet.workflows.definitions import Step
from fleet.workflows.models import WorkflowRun
from fleet.workflows.outcomes import Done, Fail, Outcome, Retry, Wait

log = logging.getLogger(__name__)

STEP_STATE = {Done: StepState.DONE, Wait: StepState.WAITING, Retry: StepState.RETRYING, Fail: StepState.FAILED}


@dataclass
class Attempt:
    """What one execution of a step gave: the outcome the engine acts on, and what the timeline shows."""

    outcome: Outcome
    step_state: str
    started_at: dt.datetime
    error_text: str = ""


def execute(run: WorkflowRun, step: Step) -> Attempt:
    """Run `step` on `run` once. Changes the step makes to `run.context` stay on `run` (for the engine to
    store with the outcome), unless they cannot be stored: then the stored context is put back."""
    started_at = timezone.now()
    clock = time.monotonic()
    ctx: dict[str, Any] = run.context
    try:
        outcome = step.fn(run, ctx)
        if not isinstance(outcome, Done | Wait | Retry | Fail):
            raise TypeError(f"step {step.name} returned {outcome!r}, not Done, Wait, Retry or Fail")
        if isinstance(outcome, Done) and outcome.data:
            ctx.update(outcome.data)
        json.dumps(ctx)  # refuse here what the JSON column would refuse inside the recording transaction
    except SoftTimeLimitExceeded:
        return Attempt(Retry(f"step {step.name} timed out after {step.timeout:g} s"), StepState.TIMED_OUT, started_at)
    except Exception as exc:
        log.warning("workflow run %s step %s raised", run.pk, step.name, exc_info=True)
        if not _is_json(ctx):
            run.context = _stored_context(run)  # keep the markers a step set before raising, if storable
        error = f"{type(exc).__name__}: {exc}"
        return Attempt(Retry(error), StepState.RETRYING, started_at, error_text=traceback.format_exc())
    elapsed = time.monotonic() - clock
    if elapsed > step.timeout:
        # The answer came too late to trust (the world may have moved on): try the step again.
        error = f"step {step.name} took {elapsed:.1f} s, over its {step.timeout:g} s timeout"
        return Attempt(Retry(error), StepState.TIMED_OUT, started_at)
    return Attempt(outcome, STEP_STATE[type(outcome)], started_at)


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _stored_context(run: WorkflowRun) -> dict[str, Any]:
    context = WorkflowRun.objects.filter(pk=run.pk).values_list("context", flat=True).first()
    return context if isinstance(context, dict) else {}
