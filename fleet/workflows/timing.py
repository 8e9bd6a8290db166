"""How long a step may run and how long its lease lasts: every relation between the two, in one place.

Celery enforces a step's `timeout` with two limits: the soft one interrupts a step stuck in I/O (the
attempt counts as timed out), the hard one kills the process. The lease must outlive the hard limit, or
a second worker could start the step while the first is still in it. A lease taken for a message (handed
over with it, or asked for by it) adds a margin for the time the message waits in the queue, so the
receiver does not have to extend it at once. tests/fleet/workflows/test_timing.py asserts each relation.
"""

import random
from dataclasses import dataclass

from django.conf import settings

SOFT_LIMIT_GRACE = 1.0  # seconds past the step's timeout: Celery's soft limit interrupts the step
HARD_LIMIT_GRACE = 3.0  # seconds past the timeout: Celery's hard limit kills the process
LEASE_GRACE = 2.0  # seconds a lease outlives the hard limit
HANDOVER_MARGIN = 2.0  # seconds a message may wait in the queue before its lease needs extending

# A delayed message (`countdown`) is held back by the worker's clock, but whether its run is due is
# decided by the database's. Every time a run is stored under is the database's (fleet/workflows/runs.py),
# so a message sent "now" always finds its run due; a delayed one may come in as early as the worker's
# clock runs ahead of the database's, and is accepted up to this early: a poll a second early is harmless,
# while a refusal would leave the run to the sweeper for a lease or a redelivery period.
EARLY_MESSAGE_SECONDS = 1.0


@dataclass(frozen=True)
class LeaseTiming:
    """The limits and lease lengths of one step, derived from its timeout (and the configured floor)."""

    step_timeout: float
    floor: float = 0.0  # FLEET_WORKFLOW_LEASE_SECONDS: no lease is taken shorter than this

    @classmethod
    def of(cls, step_timeout: float) -> "LeaseTiming":
        return cls(step_timeout, float(settings.FLEET_WORKFLOW_LEASE_SECONDS))

    @property
    def soft_limit(self) -> float:
        """Celery's soft time limit of the task that runs the step."""
        return self.step_timeout + SOFT_LIMIT_GRACE

    @property
    def hard_limit(self) -> float:
        """Celery's hard time limit: the process is killed."""
        return self.step_timeout + HARD_LIMIT_GRACE

    @property
    def needed(self) -> float:
        """What a worker must still hold when it starts the step (else it extends the lease first)."""
        return self.hard_limit + LEASE_GRACE

    @property
    def to_send(self) -> float:
        """The lease a message asks for (`lease`): what is needed plus the time it may spend queued."""
        return self.needed + HANDOVER_MARGIN

    @property
    def lease(self) -> float:
        """The lease taken for a step: what a message asks for, never less than the floor."""
        return max(self.floor, self.to_send)


def claim_seconds(asked: float | None) -> float:
    """The lease a claim takes, before it knows the step: what its message asked for (`lease`, which is
    `LeaseTiming.to_send` of the step; absent from the sweeper's and old messages), never below the floor.
    A claim that got less than its step needs extends it once it knows the step (`LeaseTiming.needed`)."""
    return max(float(settings.FLEET_WORKFLOW_LEASE_SECONDS), asked or 0.0)


def backoff_delay(attempt: int, *, base: float, cap: float) -> float:
    """Seconds before attempt `attempt + 1`: exponential with full jitter, capped ("Exponential Backoff
    and Jitter", AWS architecture blog) so that many runs failing together do not retry together."""
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    return random.uniform(0, ceiling)  # noqa: S311  # jitter, not cryptography
