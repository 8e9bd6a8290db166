"""Workflow definitions and their registry.

An app declares its workflows in its own `workflows` module or package, imported when Django starts
(see apps.py), so the web process, beat and every worker know the same kinds:

    from fleet.workflows import Step, Workflow, register

    register(Workflow(
        kind="node.wipe",
        steps=[Step("cordon", cordon, timeout=30), Step("drain", drain, queue="io", max_attempts=10), ...],
        deadline=timedelta(hours=2),
        exclusive=True,          # one active exclusive run per subject (e.g. "node:42")
        on_fail=undo_wipe,       # compensation, in the transaction that ends the run
    ))

This module imports no models, so a `workflows.py` can import it at any time.
"""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from fleet.workflows.outcomes import StepFn

if TYPE_CHECKING:
    from fleet.workflows.models import WorkflowRun

Hook = Callable[["WorkflowRun"], None]


@dataclass(frozen=True)
class Step:
    """One step: a function of (run, ctx) returning an Outcome, with its limits.

    `timeout` is the wall-clock limit of one attempt (an overrun counts as a Retry; the Celery soft time
    limit interrupts a step stuck in I/O). `max_attempts` bounds Retry outcomes, exceptions, timeouts and
    lost workers in a row (waits do not count). `queue` is where the advance message for this step goes:
    `io` for steps that talk to a site, so bookkeeping on `control` never queues behind them.
    """

    name: str
    fn: StepFn
    timeout: float = 30.0
    max_attempts: int = 5
    queue: str = "control"
    retry_base: float = 2.0  # seconds; the backoff before attempt n+1 is uniform(0, min(cap, base * 2**(n-1)))
    retry_cap: float = 300.0


@dataclass(frozen=True)
class Workflow:
    """A kind of workflow: its ordered steps, deadline, exclusivity and hooks.

    `deadline` bounds the whole run from its start (checked before each step). `exclusive` makes
    `workflow_start` give the run the key `<model>:<pk>` of its subject unless one is given, so a second
    exclusive run on the same subject is refused (409). `on_fail(run)` runs when the run ends failed or
    cancelled, `on_finish(run)` at every end; both run inside the transaction that records the end (keep
    them to database writes: for I/O, start a workflow from them). `audited` puts the run's start and
    end in the audit log; a kind started by thousands from another audited action (a rollout's site runs)
    turns it off and keeps its story on the run and on its subject.
    """

    kind: str
    steps: list[Step]
    deadline: dt.timedelta = dt.timedelta(hours=1)
    exclusive: bool = False
    on_fail: Hook | None = None
    on_finish: Hook | None = None
    audited: bool = True
    description: str = ""
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.steps:
            raise ImproperlyConfigured(f"workflow {self.kind!r} has no steps")
        for position, step in enumerate(self.steps):
            if step.name in self._index:
                raise ImproperlyConfigured(f"workflow {self.kind!r} has two steps named {step.name!r}")
            if step.timeout <= 0 or step.max_attempts < 1:
                raise ImproperlyConfigured(f"step {self.kind}.{step.name} needs a positive timeout and max_attempts")
            self._index[step.name] = position

    def step_at(self, index: int) -> Step | None:
        return self.steps[index] if 0 <= index < len(self.steps) else None

    def index_of(self, name: str) -> int:
        return self._index[name]


_registry: dict[str, Workflow] = {}


def register(definition: Workflow, *, replace: bool = False) -> Workflow:
    """Add a workflow kind to the registry (at import time of an app's workflows.py) and return it."""
    known_queues = {queue.name for queue in settings.CELERY_TASK_QUEUES}
    for step in definition.steps:
        if step.queue not in known_queues:
            raise ImproperlyConfigured(
                f"step {definition.kind}.{step.name} uses queue {step.queue!r}; known: {sorted(known_queues)}"
            )
    existing = _registry.get(definition.kind)
    if existing is not None and existing is not definition and not replace:
        raise ImproperlyConfigured(f"workflow kind {definition.kind!r} is registered twice")
    _registry[definition.kind] = definition
    return definition


def get_workflow(kind: str) -> Workflow | None:
    """The definition of `kind`, or None (a kind removed by a deploy while runs of it remain)."""
    return _registry.get(kind)


def workflow_kinds() -> list[str]:
    return sorted(_registry)
