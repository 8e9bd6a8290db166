"""Sending wake-up messages for runs. A message is only a hint: losing one costs a delay, not a run."""

import logging

from fleet.celery import app

log = logging.getLogger(__name__)

ADVANCE_TASK = "workflows.advance"
# Celery's limits around a step's own timeout: the soft limit interrupts a step stuck in I/O (it counts
# as timed out), the hard limit kills the process; the lease always outlasts the hard limit.
SOFT_LIMIT_GRACE = 1.0
HARD_LIMIT_GRACE = 3.0
LEASE_GRACE = 2.0
# A broker that is down must not hold up a request or a worker: the row is committed and the sweeper
# re-sends the message once the broker is back.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def lease_needed(step_timeout: float) -> float:
    """Seconds of lease a step needs: past Celery's hard limit, so no second worker can start it meanwhile."""
    return step_timeout + HARD_LIMIT_GRACE + LEASE_GRACE


def lease_to_send(step_timeout: float) -> float:
    """Seconds of lease to take for a step before its message travels: two seconds past what it needs,
    one more than engine._lease_covers asks for, so the time the message spends queued does not make
    the worker extend the lease at once (a second write)."""
    return lease_needed(step_timeout) + 2.0


def enqueue_advance(
    run_id: int, *, queue: str, step_timeout: float, countdown: float | None = None, lease_token: str | None = None
) -> bool:
    """Ask a worker on `queue` to advance run `run_id` (after `countdown` seconds), handing it the lease
    `lease_token` if one was taken for it. False if the broker refused: the caller's row says when the
    run is due, so the sweeper catches up."""
    options: dict[str, object] = {
        "queue": queue,
        "soft_time_limit": step_timeout + SOFT_LIMIT_GRACE,
        "time_limit": step_timeout + HARD_LIMIT_GRACE,
        "retry_policy": PUBLISH_RETRY_POLICY,
    }
    if countdown:
        options["countdown"] = countdown
    try:
        # Without a handed-over lease the worker takes one, long enough for this step (no second write).
        kwargs: dict[str, object] = (
            {"lease_token": lease_token} if lease_token else {"lease": lease_to_send(step_timeout)}
        )
        app.send_task(ADVANCE_TASK, args=[run_id], kwargs=kwargs, **options)  # type: ignore[arg-type]
    except Exception:  # the broker being down is the expected case; the sweeper recovers
        log.warning("could not send the wake-up message for workflow run %s; the sweeper will", run_id, exc_info=True)
        return False
    return True
