"""`rollout.site`: one site of a rollout, `commit` (window, gate, render, one commit pushed with the
rollout's trailer) then `converge` (await the edge's sync of that commit, then judge the release's
health). Its hook records the site's end and hands its slot to the wave's next site or wakes the
driver. docs/ARCHITECTURE.md ("Rollouts") tells how it works with the driver."""

import datetime as dt
import logging
from typing import Any

from django.db import DatabaseError, transaction
from django.utils import timezone

from fleet.errors import Conflict, FleetError
from fleet.workflows import (
    ACTIVE_STATES,
    Done,
    Fail,
    Outcome,
    Retry,
    RunState,
    Stop,
    Wait,
    Workflow,
    WorkflowRun,
    cancel,
    register,
    runs_of,
    start,
    wake,
)
from rollouts import k3s_policy, services
from rollouts.choices import (
    ROLLOUT_FINISHED_STATES,
    SITE_DONE_STATES,
    SITE_IN_FLIGHT_STATES,
    SITE_KIND,
    SITE_NOT_STARTED_STATES,
    SITE_ROLLOUT_TRANSITIONS,
    RolloutState,
    SiteRolloutState,
    SkipReason,
)
from rollouts.isolation import RendererUnavailable
from rollouts.models import Release, Rollout, RolloutWave, SiteRollout
from rollouts.planning import (
    describe_threshold,
    snapshot_min_success,
    snapshot_progress_deadline,
    snapshot_site_deadline,
    snapshot_threshold,
    threshold_exceeded,
)
from rollouts.rendering import ReleaseRenderer, RenderedSite
from rollouts.schedule import site_next_open, site_window_open
from rollouts.workflows import converge, upgrade_checks
from rollouts.workflows.common import (
    ACTOR,
    SOURCE,
    author_of,
    move,
    owned_prefix,
    rollout_trailer,
    site_io_step,
    site_rollout_of,
    site_step,
    wake_driver,
)
from rollouts.workflows.converge import SYNC_POLL_SECONDS
from sites.models import Site
from sites.repos import SiteRepo

log = logging.getLogger(__name__)

# A window wait is re-checked at least this often (a changed window takes effect).
WINDOW_RECHECK_SECONDS = 300.0
# The site run's own deadline, past the driver's skip at site_deadline_seconds.
SITE_RUN_DEADLINE_MARGIN = dt.timedelta(minutes=5)


# --- starting and stopping site runs (the driver, and a site handing over its slot) ------------------


def site_run_deadline(snapshot: dict[str, Any], now: dt.datetime) -> dt.datetime:
    """The deadline of a site run started now: a little past the driver's skip at the plan's deadline."""
    return now + dt.timedelta(seconds=snapshot_site_deadline(snapshot)) + SITE_RUN_DEADLINE_MARGIN


def start_site_runs(site_rollouts: list[SiteRollout], *, deadline: dt.datetime) -> int:
    """Start each site's run (or wake the one waiting for its window) and take their parallel slots, in
    one transaction: a run and its site's move to `committing` commit together or not at all. Returns
    how many started (a site that is no longer waiting to start is left alone)."""
    with transaction.atomic():
        rows = (
            SiteRollout.objects.select_for_update(of=("self",))
            .select_related("workflow_run")
            .filter(pk__in=[row.pk for row in site_rollouts], state__in=SITE_NOT_STARTED_STATES)
        )
        run_ids = {}
        for row in rows:
            run = row.workflow_run
            if run is not None and run.kind == SITE_KIND and run.state in ACTIVE_STATES:
                wake(run)  # it waits for the window the driver now found open
            else:
                run = start(kind=SITE_KIND, subject=row, actor=ACTOR, source=SOURCE, deadline=deadline)
            run_ids[row.pk] = run.pk
        return len(services.site_rollouts_start(run_ids=run_ids))


def cancel_site_runs(rollout: Rollout, *, reason: str) -> int:
    """Ask the rollout's active site runs to stop (a run in the middle of a step finishes the step);
    return how many are still active."""
    active = 0
    for run in runs_of(rollout.site_rollouts.all()).filter(kind=SITE_KIND, state__in=ACTIVE_STATES):
        active += 1
        if run.cancel_requested:
            continue
        try:
            cancel(run=run, actor=ACTOR, source=SOURCE, reason=reason)
        except Conflict:
            active -= 1
    return active


# --- commit -------------------------------------------------------------------------------------------


@site_step
def site_commit(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Wait for the site's window (when the plan respects windows), render the release and write it
    under `apps/<application>/`: one commit, marked with the rollout's trailer, pushed."""
    row = site_rollout_of(run, release=True)
    if row.state in SITE_DONE_STATES:
        return _stop(run, f"the site is already {row.state}")
    closed = _gate_closed(row)
    if closed:
        pushed = run.attempt > 1 and SiteRepo.for_site(row.site).find_trailer(rollout_trailer(row)) is not None
        if not pushed:  # (a re-run after a crash that had pushed records its push, as if open)
            move(row, SiteRolloutState.SKIPPED, skip_reason=SkipReason.NOT_STARTED, error=f"not started: {closed}")
            return _stop(run, f"not started: {closed}")
    if row.rollout.plan_snapshot.get("respect_windows"):
        now = timezone.now()
        if not site_window_open(row.site, now):
            next_open = site_next_open(row.site, now)
            if next_open is None:
                why = f"not started: {row.site.code} has no maintenance window left to change it in"
                move(row, SiteRolloutState.SKIPPED, skip_reason=SkipReason.NOT_STARTED, error=why)
                return _stop(run, why)
            move(row, SiteRolloutState.WAITING_WINDOW)
            seconds = min(max((next_open - now).total_seconds(), 0.05), WINDOW_RECHECK_SECONDS)
            return Wait(seconds, f"outside the maintenance window; it opens at {next_open.isoformat()}")
        if row.state == SiteRolloutState.WAITING_WINDOW:
            move(row, SiteRolloutState.COMMITTING)
    release = row.rollout.release
    rendered = _render(release, row.site)
    upgrade: dict[str, Any] = {}
    if k3s_policy.is_k3s(release.application):  # a K3s upgrade is judged from the nodes (upgrade_checks)
        upgrade, refused = upgrade_checks.before(row, release.version)
        if refused:
            return Fail(refused)
    prefix = owned_prefix(row)
    repo = SiteRepo.for_site(row.site)  # a refused repo_url is a RepoError: the site fails with why
    result = repo.write(
        {f"{prefix}/{path}": text for path, text in rendered.files.items()},
        owned_prefix=prefix,
        message=(
            f"Roll out {release.application.name} {release.version} (rollout {row.rollout_id})\n\n"
            f"{rollout_trailer(row)}"
        ),
        author=author_of(row.rollout),
    )
    previous = result.previous if result.changed else _previous_of_unchanged(repo, row, result.revision)
    ctx.pop("skip", None)
    ctx.pop("repo_waits", None)
    if result.revision is None:
        return Fail("the repository is still empty after the write")
    move(row, SiteRolloutState.SYNCING, revision=result.revision, previous_revision=previous or "")
    deployments = [list(key) for key in rendered.deployments()]
    snapshot = row.rollout.plan_snapshot
    data = {
        "revision": result.revision,
        "changed": result.changed,
        "previous": previous,
        "deployments": deployments,
        # The health rules' knobs, so that polls need not read the rollout.
        "progress_deadline_seconds": snapshot_progress_deadline(snapshot),
        "min_success_seconds": snapshot_min_success(snapshot),
    }
    if upgrade:
        data["upgrade"] = upgrade
    # The edge cannot have applied a commit it has not fetched yet: the first look is one poll later.
    return Done(data, after=SYNC_POLL_SECONDS)


def _render(release: Release, site: Site) -> RenderedSite:
    """The release rendered for the site, in the renderer process within the per-site CPU, memory and
    time limits (rollouts.isolation). A renderer that cannot start is the machine's trouble (Retry); a
    template that fails or passes a limit fails the site, naming why."""
    try:
        return ReleaseRenderer.cached(release).render_checked(site)
    except RendererUnavailable as exc:
        raise Stop(Retry(exc.message)) from exc
    except FleetError as exc:
        raise Stop(Fail(f"rendering failed: {exc}")) from exc


def _gate_closed(row: SiteRollout) -> str:
    """Why this site must not start now ("" when it may): the rollout halted, was cancelled or is being
    rolled back, or its wave has more failures than the plan's threshold (the driver halts it next)."""
    rollout = row.rollout
    if rollout.rollback_requested_at is not None:
        return "the rollout is being rolled back"
    if rollout.state in (RolloutState.HALTED, *ROLLOUT_FINISHED_STATES):
        return f"the rollout is {rollout.state}"
    threshold = snapshot_threshold(rollout.plan_snapshot)
    wave = row.wave
    if threshold_exceeded(threshold, failed=wave.n_failed, size=wave.size):
        limit = describe_threshold(threshold)
        return f"{wave.n_failed} site(s) of wave {wave.index} failed, more than the threshold of {limit}"
    return ""


def _stop(run: WorkflowRun, reason: str) -> Outcome:
    """End this run as cancelled: nothing failed, the site is not to be changed (its state is recorded)."""
    try:
        cancel(run=run, actor=ACTOR, source=SOURCE, reason=reason)
    except Conflict:
        pass
    return Wait(0.05, reason)  # the engine ends a run asked to stop instead of waiting


def _previous_of_unchanged(repo: SiteRepo, row: SiteRollout, head: str | None) -> str | None:
    """The write changed nothing. Either this is a re-run after a crash that came between our push and
    recording it, and the commit carrying our trailer is there (its parent is what came before), or the
    site already had exactly these files (then the head is what to go back to: nothing)."""
    marked = repo.find_trailer(rollout_trailer(row))
    return marked.parent if marked is not None else head


# --- converge -----------------------------------------------------------------------------------------


@site_step
def site_converge(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Poll the edge until it applied the commit (Ready True naming our SHA; Fail with the edge's message
    when it reports the commit failed), then judge the release's health (rollouts.health) until it is
    healthy, or not. An unreachable site is a Wait, not a failure."""
    row = site_rollout_of(run)
    sha = ctx["revision"]
    if converge.phase(row, ctx) == SiteRolloutState.SYNCING:
        status = converge.sync_status(row, ctx)
        converge.reachable_again(row, ctx)
        if status is None:
            return converge.waiting(ctx, SYNC_POLL_SECONDS, "the site has no GitOps status yet")
        if status.failed_at(sha):
            return Fail(converge.sync_failure(row, status, sha))
        if not status.applied(sha) and not converge.applied_later(row, ctx, status, sha):
            at = status.last_applied_revision
            return converge.waiting(ctx, SYNC_POLL_SECONDS, f"waiting for the edge to apply {sha[:12]} (at {at})")
    verdict = upgrade_checks.judge(row, ctx) if ctx.get("upgrade") else converge.judge(row, ctx)
    converge.reachable_again(row, ctx)
    if verdict.failed:
        return Fail(verdict.message)
    if verdict.healthy:
        return Done()  # on_finish records the success
    if row.state == SiteRolloutState.SYNCING:
        move(row, SiteRolloutState.VERIFYING)
    return converge.waiting(ctx, SYNC_POLL_SECONDS, verdict.message)


# --- the end of a site run ----------------------------------------------------------------------------


def site_finished(run: WorkflowRun) -> None:
    """on_finish of a site run: record its end on the SiteRollout, then hand its slot to the next site
    of the wave or, when that is not simply the thing to do, wake the driver."""
    row = SiteRollout.objects.filter(pk=run.subject_id).first()
    if row is None:
        return
    if row.state not in SITE_DONE_STATES:
        if run.state == RunState.SUCCEEDED:
            move(row, SiteRolloutState.SUCCEEDED, error="")
            try:
                with transaction.atomic():  # a failed hand-over must not undo the success above
                    if _hand_over_slot(row):
                        return
            except (FleetError, DatabaseError):
                log.warning("rollout %s: handing %s's slot over failed", row.rollout_id, row.pk, exc_info=True)
        elif run.state == RunState.FAILED:
            skip = (run.context or {}).get("skip")
            if skip in SkipReason.values:  # the step ended it because the site could not be reached
                move(row, SiteRolloutState.SKIPPED, error=run.error, skip_reason=skip)
            elif row.state in SITE_IN_FLIGHT_STATES:
                move(row, SiteRolloutState.FAILED, error=run.error)
            else:
                move(row, SiteRolloutState.SKIPPED, error=run.error, skip_reason=SkipReason.NOT_STARTED)
        elif row.rollout.rollback_requested_at is None:
            # Cancelled (the rollout was cancelled; sites the driver ended are done before their run is).
            # During a roll back the state is kept, so the roll back knows the site may hold the release.
            reason = SkipReason.NOT_STARTED if row.state in SITE_NOT_STARTED_STATES else SkipReason.CANCELLED
            if SiteRolloutState.SKIPPED in SITE_ROLLOUT_TRANSITIONS[row.state]:
                move(row, SiteRolloutState.SKIPPED, error=run.error, skip_reason=reason)
    transaction.on_commit(lambda: wake_driver(row.rollout_id), robust=True)


def _hand_over_slot(row: SiteRollout) -> bool:
    """A site of the open wave succeeded: start the wave's next pending site in its place, in the same
    transaction, and tell whether it did (one site ends and one starts, so max_parallel holds). Anything
    less plain is left to the driver: a rollout not running, a roll back, windows to respect, failures
    past the threshold, a wave not open, no pending site left (the wave may be complete)."""
    rollout = Rollout.objects.only("state", "current_wave", "rollback_requested_at", "plan_snapshot").get(
        pk=row.rollout_id
    )
    snapshot = rollout.plan_snapshot
    if rollout.state != RolloutState.RUNNING or rollout.rollback_requested_at or snapshot.get("respect_windows"):
        return False
    wave = RolloutWave.objects.get(pk=row.wave_id)
    if wave.index != rollout.current_wave or wave.opened_at is None or wave.closed_at is not None:
        return False
    if threshold_exceeded(snapshot_threshold(snapshot), failed=wave.n_failed, size=wave.size):
        return False
    successor = SiteRollout.objects.filter(wave=wave, state=SiteRolloutState.PENDING).order_by("position").first()
    if successor is None:
        return False
    return bool(start_site_runs([successor], deadline=site_run_deadline(snapshot, timezone.now())))


SITE = register(
    Workflow(
        kind=SITE_KIND,
        steps=[
            site_io_step("commit", site_commit, max_attempts=8),
            site_io_step("converge", site_converge, max_attempts=10),
        ],
        deadline=dt.timedelta(hours=7),
        exclusive=True,
        on_finish=site_finished,
        # Thousands per rollout: the rollout's own audit entries (start, waves, and every site that
        # failed, was skipped or rolled back) tell the story; each run keeps its timeline.
        audited=False,
        description="rolls a release out to one site: window and commit, then sync and health",
    )
)
