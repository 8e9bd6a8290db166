"""What the rollout workflows share: who they act as, their tuning knobs (FLEET_ROLLOUT_*), the site's
errors as outcomes (`site_step`), and the helpers the site and roll-back steps use on a SiteRollout."""

import random
from typing import Any

from django.conf import settings

from fleet.audit.choices import Source, SystemActor
from fleet.workflows import Fail, Step, StepFn, Wait, WorkflowRun, active_run, errors_as_outcomes, wake
from rollouts import services
from rollouts.choices import SkipReason
from rollouts.models import Rollout, SiteRollout
from rollouts.workflows.converge import mark_unreachable, unreachable
from sites.clusters import ClusterError, ClusterUnavailable
from sites.repos import Author, RepoError, RepoUnavailable

ACTOR = SystemActor.ROLLOUT
SOURCE = Source.WORKFLOW
# The trailer of every commit a rollout makes: `Edgefleet-Rollout: <rollout id>`.
TRAILER_KEY = "Edgefleet-Rollout"


def _setting(name: str, default: float) -> float:
    """A tuning knob from fleet/settings/edge.py (FLEET_ROLLOUT_*), read when the workflows are registered."""
    return float(getattr(settings, name, default))


# How often the driver looks again while running with nothing to do (site ends wake it sooner), and
# while paused, halted or awaiting an approval (the services wake it on every change).
DRIVE_POLL_SECONDS = _setting("FLEET_ROLLOUT_POLL_SECONDS", 2.0)
DRIVE_IDLE_SECONDS = _setting("FLEET_ROLLOUT_IDLE_POLL_SECONDS", 30.0)
# The time limit of the driver's step (database work only; bounded by the decisions per step).
DRIVE_STEP_TIMEOUT = _setting("FLEET_ROLLOUT_DRIVE_TIMEOUT", 30.0)
# The time limit of one attempt at a step that talks to a site (git or Kubernetes). A worker lost in
# such a step is noticed when its lease expires, max(FLEET_WORKFLOW_LEASE_SECONDS, this + 7 s) after
# the step began (fleet.workflows' LeaseTiming), and the next sweep: keep it close to what the
# adapters' own timeouts allow (a write is a fetch, a commit and a push).
SITE_STEP_TIMEOUT = _setting("FLEET_ROLLOUT_STEP_TIMEOUT", 60.0)
# The longest wait between two tries at a push the git host did not take.
REPO_WAIT_CAP = 60.0


# --- the site's errors as outcomes ------------------------------------------------------------------


def _repo_unreachable(run: WorkflowRun, ctx: dict[str, Any], exc: RepoUnavailable) -> Wait:
    """The site's repository did not take the push (the git host is down or busy): look again later,
    backing off (full jitter, doubling up to REPO_WAIT_CAP seconds). An outage of the git host is no fault
    of the site, so it does not use up the step's attempts: the site waits, holding its slot, until the
    host answers or the site deadline passes (then the driver skips it as unreachable, quoting this)."""
    ctx["skip"] = SkipReason.UNREACHABLE
    ctx["last_status"] = f"cannot push to the site's repository: {exc}"
    waits = int(ctx.get("repo_waits", 0)) + 1
    ctx["repo_waits"] = waits
    delay = random.uniform(1.0, max(1.0, min(REPO_WAIT_CAP, 2.0 * 2 ** min(waits - 1, 10))))  # noqa: S311
    return Wait(delay, ctx["last_status"])


def _cluster_unreachable(run: WorkflowRun, ctx: dict[str, Any], exc: ClusterUnavailable) -> Wait:
    """The site does not answer: look again later, saying since when (an outage is not a failure). The
    site shows as `unreachable` (counted apart from syncing) until it answers or its deadline skips it."""
    row = SiteRollout.objects.select_related("site__cluster").filter(pk=run.subject_id).first()
    cluster = getattr(row.site, "cluster", None) if row is not None else None
    wait = unreachable(ctx, exc, api_url=getattr(cluster, "api_url", "") or "")
    mark_unreachable(row, ctx, wait.reason)
    return wait


def _cluster_refused(run: WorkflowRun, ctx: dict[str, Any], exc: ClusterError) -> Fail:
    """The site's cluster refuses us (credentials, permissions) or none is recorded: the run ends, and
    the site is skipped as unreachable rather than failed."""
    ctx["skip"] = SkipReason.UNREACHABLE
    code = SiteRollout.objects.filter(pk=run.subject_id).values_list("site__code", flat=True).first()
    return Fail(f"cannot read the cluster of {code or run.subject_repr}: {exc}")


# Every step that talks to a site declares the adapters' errors once: git (sites.repos) and Kubernetes
# (sites.clusters). Anything else propagates and the engine records it as a Retry with its traceback.
site_step = errors_as_outcomes(
    {
        RepoUnavailable: _repo_unreachable,
        RepoError: Fail,
        ClusterUnavailable: _cluster_unreachable,
        ClusterError: _cluster_refused,
    }
)


def site_io_step(name: str, fn: StepFn, *, max_attempts: int) -> Step:
    """A step of a site or roll-back run that talks to the site (git or Kubernetes): on the `io` queue,
    SITE_STEP_TIMEOUT per attempt, retries backing off up to a minute."""
    return Step(name, fn, timeout=SITE_STEP_TIMEOUT, queue="io", max_attempts=max_attempts, retry_cap=60)


# --- helpers ------------------------------------------------------------------------------------------


def site_rollout_of(run: WorkflowRun, *, release: bool = False) -> SiteRollout:
    """The run's SiteRollout with its site and cluster; with `release`, its rollout, release and
    application too (the steps that write; polling needs none of them, and reading the release's
    templates on every poll would cost more than the poll)."""
    related = ["site__cluster", "rollout__release__application", "wave"] if release else ["site__cluster"]
    row = SiteRollout.objects.select_related(*related).filter(pk=run.subject_id).first()
    if row is None:
        raise LookupError(f"site rollout {run.subject_id} no longer exists")
    return row


def author_of(rollout: Rollout) -> Author:
    """Who a rollout's commits are by: the person who started it (or edgefleet)."""
    return Author.of(rollout.started_by or rollout.started_by_name or "edgefleet")


def owned_prefix(row: SiteRollout) -> str:
    """The folder of the site's repository that the rollout's application owns."""
    return f"apps/{row.rollout.release.application.name}"


def rollout_trailer(row: SiteRollout) -> str:
    """The line every commit of this rollout carries, so git itself can say what the rollout did."""
    return f"{TRAILER_KEY}: {row.rollout_id}"


def move(row: SiteRollout, to: str, **fields: Any) -> None:
    """Record the site's new state (rollouts.services.site_rollout_transition, counters included)."""
    services.site_rollout_transition(site_rollout=row, to=to, actor=ACTOR, source=SOURCE, **fields)


def wake_driver(rollout_id: int) -> None:
    """Make the driver run of rollout `rollout_id` due now, if one is active (a site run ended; wake-ups
    coalesce, so a hundred sites ending together cost the driver one step)."""
    run = active_run(Rollout(pk=rollout_id))  # a reference is enough: the row need not be read
    if run is not None:
        wake(run)
