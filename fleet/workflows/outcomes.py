"""What a step returns: Done, Wait, Retry or Fail. The engine decides what happens next from it.

A step is `fn(run, ctx) -> Outcome`. `ctx` is the run's JSON context: changes the step makes to it are
saved with the outcome (whatever the outcome), so a step can leave idempotency markers there.
`errors_as_outcomes` turns the exceptions an app's adapters raise into outcomes, once per app.
"""

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from django.db.models import Model, QuerySet

    from fleet.workflows.models import WorkflowRun

M = TypeVar("M", bound="Model")


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


class Stop(Exception):  # noqa: N818  # control flow, not an error: a helper decided the step's outcome
    """Raised by a helper deep inside a step to end the step with `outcome` (e.g. `Stop(Fail("gone"))`);
    a step wrapped by `errors_as_outcomes` returns it."""

    def __init__(self, outcome: Outcome):
        super().__init__(str(outcome))
        self.outcome = outcome


def subject_or_stop(run: "WorkflowRun", queryset: "QuerySet[M]") -> M:
    """The run's subject as `queryset` reads it (with the relations the steps use); when it was deleted
    meanwhile, the step stops with a Fail naming it ("node edge-01 no longer exists")."""
    subject = run.get_subject()
    if subject is None:
        noun = queryset.model._meta.verbose_name
        raise Stop(Fail(f"{noun} {run.subject_repr or run.subject_id} no longer exists"))
    return queryset.get(pk=subject.pk)


ErrorTypes = type[Exception] | tuple[type[Exception], ...]
# What an error becomes: `Retry` or `Fail` (with the error's message), or a function of (run, ctx, error).
OutcomeFor = type[Retry] | type[Fail] | Callable[["WorkflowRun", dict[str, Any], Any], Outcome]
StepFn = Callable[["WorkflowRun", dict[str, Any]], Outcome]


def errors_as_outcomes(mapping: Mapping[ErrorTypes, OutcomeFor]) -> Callable[[StepFn], StepFn]:
    """A step decorator that turns the declared exceptions into outcomes, so an app writes its mapping
    once and every step uses it instead of its own try/except:

        site_step = errors_as_outcomes({
            ClusterUnavailable: wait_for_the_site,   # (run, ctx, error) -> Outcome
            ClusterRefused: Fail,                     # Fail(<the error's message>)
            ClusterError: Retry,                      # Retry(<the error's message>)
        })

    Entries are tried in order, so name a subclass before its base. `Stop(outcome)` always returns its
    outcome. Anything else propagates: the engine records it as a Retry with its traceback.
    """
    entries = list(mapping.items())

    def decorate(fn: StepFn) -> StepFn:
        @functools.wraps(fn)
        def step(run: "WorkflowRun", ctx: dict[str, Any]) -> Outcome:
            try:
                return fn(run, ctx)
            except Stop as stop:
                return stop.outcome
            except Exception as exc:
                for types, outcome_for in entries:
                    if isinstance(exc, types):
                        return _outcome(outcome_for, run, ctx, exc)
                raise

        return step

    return decorate


def _outcome(outcome_for: OutcomeFor, run: "WorkflowRun", ctx: dict[str, Any], exc: Exception) -> Outcome:
    message = getattr(exc, "message", None)
    text = message if isinstance(message, str) and message else str(exc)
    if outcome_for is Retry:
        return Retry(text)
    if outcome_for is Fail:
        return Fail(text)
    function = cast(Callable[["WorkflowRun", dict[str, Any], Any], Outcome], outcome_for)
    return function(run, ctx, exc)
