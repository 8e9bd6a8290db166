"""Wake-up messages for runs. A message is only a hint: losing one costs a delay, never a run.

The wire protocol, kept across releases so that messages in flight during a deploy are understood by
the new workers: the Celery task `workflows.advance` with the run's id as its one argument and at most
one keyword, `lease_token` (the lease the sender took for the receiver) or `lease` (the seconds of
lease the step needs), and Celery's soft and hard time limits set from the step's timeout.

What people see of a message in Flower (or `celery inspect`) is its `argsrepr`: the run's kind, id, step
and subject ("rollout.site run 812 at converge: TX-1042 in rollout 7"), set here; it is a header for
display only, so the wire protocol above is unchanged.
"""

import logging

from django.db import transaction

from fleet.celery import app
from fleet.workflows.definitions import get_workflow
from fleet.workflows.models import WorkflowRun
from fleet.workflows.timing import LeaseTiming

log = logging.getLogger(__name__)

ADVANCE_TASK = "workflows.advance"
# A broker that is down must not hold up a request or a worker: the row is committed and the sweeper
# re-sends the message once the broker is back.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
# Where a message for a run whose kind or step is unknown goes: advance then fails the run with the reason.
UNKNOWN_ROUTE = ("control", 30.0)


def run_label(run: WorkflowRun) -> str:
    """What a wake-up message serves, for Flower: `rollout.site run 812 at converge: TX-1042 in rollout 7`."""
    step = f" at {run.current_step}" if run.current_step else ""
    subject = f": {run.subject_repr}" if run.subject_repr else ""
    return f"{run.kind} run {run.pk}{step}{subject}"[:200]


def enqueue_advance(
    run_id: int,
    *,
    queue: str,
    step_timeout: float,
    countdown: float | None = None,
    lease_token: str | None = None,
    label: str = "",
) -> bool:
    """Ask a worker on `queue` to advance run `run_id` (after `countdown` seconds), handing it the lease
    `lease_token` if one was taken for it. False if the broker refused: the caller's row says when the
    run is due, so the sweeper catches up."""
    timing = LeaseTiming.of(step_timeout)
    options: dict[str, object] = {
        "queue": queue,
        "soft_time_limit": timing.soft_limit,
        "time_limit": timing.hard_limit,
        "retry_policy": PUBLISH_RETRY_POLICY,
        # Shown by Flower instead of the bare id; the lease token stays out of it.
        "argsrepr": f"({run_id},) {label or f'run {run_id}'}",
        "kwargsrepr": "{lease handed over}" if lease_token else "{}",
    }
    if countdown:
        options["countdown"] = countdown
    # Without a handed-over lease the worker takes one, long enough for this step (no second write).
    kwargs: dict[str, object] = {"lease_token": lease_token} if lease_token else {"lease": timing.to_send}
    try:
        app.send_task(ADVANCE_TASK, args=[run_id], kwargs=kwargs, **options)  # type: ignore[arg-type]
    except Exception:  # the broker being down is the expected case; the sweeper recovers
        log.warning("could not send the wake-up message for workflow run %s; the sweeper will", run_id, exc_info=True)
        return False
    return True


def route(kind: str, step_index: int) -> tuple[str, float]:
    """The queue and timeout of the step a run of `kind` is at (a fallback for an unknown one)."""
    definition = get_workflow(kind)
    step = definition.step_at(step_index) if definition else None
    return (step.queue, step.timeout) if step else UNKNOWN_ROUTE


def send_after_commit(run: WorkflowRun) -> None:
    """Once the caller's transaction commits, wake a worker for `run` at its current step."""
    queue, timeout = route(run.kind, run.step_index)
    label = run_label(run)
    transaction.on_commit(lambda: enqueue_advance(run.pk, queue=queue, step_timeout=timeout, label=label), robust=True)
