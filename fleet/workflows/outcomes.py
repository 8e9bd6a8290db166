"""What a step returns: Done, Wait, Retry or Fail. The engine decides what happens next from it.

A step is `fn(run, ctx) -> Outcome`. `ctx` is the run's JSON context: changes the step makes to it are
saved with the outcome (whatever the outcome), so a step can leave idempotency markers there.
"""

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Done:
    """The step is finished; `data` is merged into the context and the next step runs at once, or
    `after` seconds from now (a step that just asked for something the next one polls for: a push the
    edge has not had time to apply cannot be applied yet, so looking at once would be a wasted step)."""

    data: dict[str, Any] | None = None
    after: float = 0.0


@dataclass(frozen=True)
class Wait:
    """Not yet (node not Ready, sync not finished, outside the window): run this step again in `seconds`.

    Waiting costs nothing: the run is stored with a `wake_at` and the sweeper wakes it. Waits do not
    count as attempts, so a step may wait for days.
    """

    seconds: float
    reason: str = ""


@dataclass(frozen=True)
class Retry:
    """A transient error (API 5xx/429/timeout, push rejected): try the step again later.

    `after` fixes the delay (e.g. a Retry-After header); otherwise exponential backoff with full jitter.
    After the step's `max_attempts` the run fails with this error.
    """

    error: str
    after: float | None = None


@dataclass(frozen=True)
class Fail:
    """A permanent failure: the run ends `failed` with this reason and the definition's on_fail runs."""

    reason: str
    details: dict[str, Any] = field(default_factory=dict)


Outcome = Done | Wait | Retry | Fail
