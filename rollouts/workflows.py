"""The rollout workflows: one run drives each rollout, one run drives each site of it.

Design (why a driver *workflow* rather than a beat task): the per-rollout driver `rollout.drive` is a
workflow run whose subject is the Rollout (exclusive: one driver per rollout, by the database). Its
single step applies `rollouts.progress.decide` until the decision is idle (or only touched sites),
then returns a short Wait. So the driver gets, for free, what a beat task would have to re-invent: a
lease (two workers never drive the same rollout), a stored wake-up (`wake_at`: bake ends, windows
open), crash recovery by the sweeper, and a timeline in the admin. A beat task would scan every active
rollout every tick; the driver costs nothing while it waits, and is woken at once when something
happens:

- a site run ending when its slot could not simply be handed over (below): its `on_finish` hook makes
  the driver due, unless it is already due with a message on its way (endings coalesce);
- a person pausing, resuming, approving, cancelling or rolling back (rollouts.services call `rollout_wake`).

Each decision reads the waves' counters and, for the open wave only, the handful of sites it can act
on (rollouts.selectors.rollout_progress_view), so a decision costs the same at 30 sites or 3000.

Site runs (`rollout.site`, subject the SiteRollout, exclusive per site rollout, not audited: the
rollout and every failed, skipped or rolled back site are):

    commit -> converge (both on the io queue)

- commit: with `respect_windows`, a site whose window is closed moves to `waiting_window` and waits
  (a stored wake-up) until it opens (rollouts.schedule); the driver normally starts only sites whose
  window is open, this catches a window closing in between. Then it renders the release
  (ReleaseRenderer: in the renderer process, within its per-site limits; a limit passed fails the site
  with the limit named) and `SiteRepo.write`s it under `apps/<application>/`,
  one commit whose message ends with the trailer `Edgefleet-Rollout: <rollout id>`, and records the
  commit and the revision it replaced. Idempotent: a re-run after a crash between the push and the
  recording writes the same files (no new commit) and finds what came before as the parent of the
  commit carrying the trailer. Never two commits for one site. The next step is due one poll later
  (`Done(after=...)`): the edge cannot have applied a push it has not fetched.
- converge: polls the edge GitOps agent's status until it applied the commit (Wait), fails with the
  edge's message when it reports the commit failed (an unreachable site is a Wait, not a failure),
  then judges the release's health with rollouts.health (`verifying`): the site fails as soon as a
  Deployment reports ProgressDeadlineExceeded, makes no progress for the plan's progress deadline, or
  has a pod in CrashLoopBackOff / ImagePullBackOff / ErrImagePull past a short grace; it succeeds once
  every Deployment is available at its new generation and has stayed so for `min_success_seconds`.
  One list of Deployments per poll; pods are listed only once a Deployment has been unavailable for
  a few seconds. The first answer from the site after the push is recorded (`reached_at` in the
  run's context): the site was reached, so it will be judged, not skipped.

Before it pushes, the commit step checks the gate: a rollout halted, cancelled or being rolled back,
or a wave already past its failure threshold, starts no more sites: the site is skipped as never
started and its run ends cancelled. A step that ends the run because the site cannot be reached (its
repository keeps refusing connections, its cluster refuses our credentials) marks it so (`skip` in
the context): the site is then skipped as unreachable rather than failed.

When a site run succeeds, its hook hands the slot to the wave's next pending site in the same
transaction, unless something needs deciding (rollout not running, roll back, windows, failures past
the threshold, wave not open, nothing pending): then it wakes the driver. One site ends and one
starts, so max_parallel holds; it spares the driver a step per site.

The site's wall-clock deadline (`site_deadline_seconds`) is enforced by the driver: `decide` fails
the sites past it that were reached (their commit was pushed and the site answered: the release is
not healthy there) and skips those that could not be reached, and the driver cancels their runs.
The run's own deadline is a little later, as a backstop. Skipped means "could not be reached, or
never started", nothing else: only failed sites count against the threshold, and a wave whose every
site was skipped halts unless the plan allows it (rollouts.progress).

Roll back (`rollout.site_rollback`, same exclusive key as the site run): when a roll back is requested
(by a person, or by the plan's `auto_rollback` when a wave halts), the driver skips the sites not
started, cancels the site runs still going, waits until they have ended, then starts one roll-back run
per site whose repository may hold the release (sites that got it, and sites skipped as unreachable
or stopped by a cancel after they may have pushed): the revision before the rollout is the one recorded,
or, for a run that never recorded its push, the parent of the commit carrying the rollout's trailer
(none: nothing to revert). `revert_to` it for `apps/<app>/` as a new commit (or remove the folder when
the repository was empty before), then await its sync (not for a site that could not be reached: the
revert waits in its repository). When every roll-back run has ended the rollout is `rolled_back`.
A halt skips the sites not started, as never started.

Pause holds new starts (running site runs finish); cancel skips the sites not started and cancels the
site runs that are waiting (a run in the middle of a step finishes that step, then stops).

Knobs (settings, or the environment): FLEET_ROLLOUT_POLL_SECONDS (2: the driver's look-again while
running), FLEET_ROLLOUT_IDLE_POLL_SECONDS (30: while paused, halted or awaiting approval),
FLEET_ROLLOUT_SYNC_POLL_SECONDS (1: sync and health polls), FLEET_ROLLOUT_STEP_TIMEOUT (60: a site
step's time limit; a worker lost in a step is noticed after this plus ~5 s of lease),
FLEET_ROLLOUT_DRIVE_TIMEOUT (30), FLEET_ROLLOUT_POD_GRACE_SECONDS (60: how long a pod may wait in
CrashLoopBackOff / ImagePullBackOff / ErrImagePull before its site fails). Known limit: a wake-up that
arrives while the driver's step is running is not queued; the driver sees the change at its next poll
(FLEET_ROLLOUT_POLL_SECONDS).
"""

import datetime as dt
import logging
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone

import rollouts.dry_runs  # noqa: F401  # registers the rollout.dry_run kind wherever these kinds are
from fleet.errors import Conflict, FleetError
from fleet.workflows.choices import ACTIVE_STATES, RunState
from fleet.workflows.definitions import Step, Workflow, register
from fleet.workflows.engine import schedule_now
from fleet.workflows.models import WorkflowRun
from fleet.workflows.outcomes import Done, Fail, Outcome, Retry, Wait
from fleet.workflows.selectors import active_run_for_key
from fleet.workflows.services import subject_key, workflow_cancel, workflow_start
from rollouts import converge, services
from rollouts.choices import (
    ROLLOUT_FINISHED_STATES,
    SITE_DONE_STATES,
    SITE_IN_FLIGHT_STATES,
    SITE_NOT_STARTED_STATES,
    SITE_ROLLOUT_TRANSITIONS,
    SITE_TOUCHED_STATES,
    SKIP_MAY_HOLD_RELEASE,
    RolloutState,
    SiteRolloutState,
    SkipReason,
    WaveState,
)
from rollouts.converge import SYNC_POLL_SECONDS
from rollouts.health import clock
from rollouts.isolation import RendererUnavailable
from rollouts.models import Rollout, RolloutWave, SiteRollout
from rollouts.planning import (
    describe_threshold,
    snapshot_min_success,
    snapshot_progress_deadline,
    snapshot_site_deadline,
    snapshot_threshold,
    threshold_exceeded,
)
from rollouts.progress import Decision, decide
from rollouts.rendering import ReleaseRenderer
from rollouts.schedule import site_next_open, site_window_open
from rollouts.selectors import rollout_progress_view
from sites.repos import Author, RepoError, RepoUnavailable, SiteRepo

log = logging.getLogger(__name__)

DRIVE_KIND = "rollout.drive"
SITE_KIND = "rollout.site"
ROLLBACK_KIND = "rollout.site_rollback"
ACTOR = "system:rollout"
# The trailer of every commit a rollout makes: `Edgefleet-Rollout: <rollout id>`.
TRAILER_KEY = "Edgefleet-Rollout"
SOURCE = "workflow"


def _setting(name: str, default: float) -> float:
    """A tuning knob from fleet/settings.py (FLEET_ROLLOUT_*), read when the workflows are registered."""
    return float(getattr(settings, name, default))


# How often the driver looks again while running with nothing to do (site ends wake it sooner), and
# while paused, halted or awaiting an approval (the services wake it on every change).
DRIVE_POLL_SECONDS = _setting("FLEET_ROLLOUT_POLL_SECONDS", 2.0)
DRIVE_IDLE_SECONDS = _setting("FLEET_ROLLOUT_IDLE_POLL_SECONDS", 30.0)
# The time limit of one attempt at a step that talks to a site (git or Kubernetes). A worker lost in
# such a step is noticed after its lease, which is this plus a few seconds: keep it close to what the
# adapters' own timeouts allow (a write is a fetch, a commit and a push).
SITE_STEP_TIMEOUT = _setting("FLEET_ROLLOUT_STEP_TIMEOUT", 60.0)
# The same for the driver's step (database work only; bounded by MAX_DECISIONS_PER_STEP).
DRIVE_STEP_TIMEOUT = _setting("FLEET_ROLLOUT_DRIVE_TIMEOUT", 30.0)
# A window wait is re-checked at least this often (a changed window takes effect).
WINDOW_RECHECK_SECONDS = 300.0
# Decisions applied in one driver step before it yields (a huge wave still makes progress in steps).
MAX_DECISIONS_PER_STEP = 20
# The site run's own deadline, past the driver's skip at site_deadline_seconds.
SITE_RUN_DEADLINE_MARGIN = dt.timedelta(minutes=5)


# --- waking and starting the driver ---------------------------------------------------------------


def driver_key(rollout: Rollout) -> str:
    return subject_key(rollout)


def rollout_wake(*, rollout: Rollout, actor: Any = ACTOR, source: str = SOURCE) -> WorkflowRun | None:
    """Make the rollout's driver run due now, or start one if none is active and the rollout still has
    something to do. Call inside the transaction that changed the rollout: the wake-up is sent after
    commit. Returns the driver run (None when there is nothing to drive)."""
    run = active_run_for_key(driver_key(rollout))
    if run is not None:
        _make_due(run)
        return run
    rollout.refresh_from_db(fields=["state", "rollback_requested_at"])
    if rollout.state == RolloutState.ROLLED_BACK:
        return None
    if rollout.state in ROLLOUT_FINISHED_STATES and rollout.rollback_requested_at is None:
        return None
    try:
        return workflow_start(kind=DRIVE_KIND, subject=rollout, actor=actor, source=source)
    except Conflict:  # started concurrently: that one drives it
        return active_run_for_key(driver_key(rollout))


def _wake_driver_on_commit(rollout_id: int) -> None:
    run = active_run_for_key(f"rollout:{rollout_id}")
    if run is not None:
        _make_due(run)


def _make_due(run: WorkflowRun) -> None:
    """Make a waiting run due now and send it a message, unless it is already due with a message on its
    way: a hundred sites ending together wake the driver once, and one decision serves them all."""
    already_due = Q(enqueued_at__isnull=False, wake_at__lte=Now())
    made_due = (
        WorkflowRun.objects.filter(pk=run.pk, state__in=[RunState.PENDING, RunState.WAITING])
        .exclude(already_due)
        .update(wake_at=Now(), enqueued_at=Now(), updated_at=Now())
    )
    if made_due:
        schedule_now(run)


# --- the driver -----------------------------------------------------------------------------------


def drive(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Apply decide() until idle; Wait while the rollout has a future, Done once it has none."""
    rollout = run.get_subject()
    if rollout is None:
        return Fail("the rollout no longer exists")
    for decisions in range(MAX_DECISIONS_PER_STEP):
        if decisions:
            rollout.refresh_from_db()
        if rollout.rollback_requested_at is not None and rollout.state != RolloutState.ROLLED_BACK:
            return _roll_back(rollout)
        if rollout.state == RolloutState.CANCELLED:
            return _wind_down(rollout)
        if rollout.state in ROLLOUT_FINISHED_STATES:
            return Done({"final_state": rollout.state})
        now = timezone.now()
        decision = decide(rollout_progress_view(rollout, now), now)
        if decision.idle:
            poll = DRIVE_POLL_SECONDS if rollout.state == RolloutState.RUNNING else DRIVE_IDLE_SECONDS
            if decision.wake_at is not None:
                poll = min(poll, max((decision.wake_at - now).total_seconds(), 0.05))
            ctx["last_decision"] = decision.reason
            return Wait(poll, decision.reason)
        ctx["last_decision"] = decision.reason
        _apply(rollout, decision, now)
        if not decision.changes_rollout and not (decision.fail or decision.skip):
            # Sites started, skipped or set waiting: nothing else can be decided until one of them
            # ends (which wakes the driver) or the poll comes round.
            return Wait(DRIVE_POLL_SECONDS, decision.reason)
    return Wait(0.05, "more decisions to apply")


def _apply(rollout: Rollout, decision: Decision, now: dt.datetime) -> None:
    """Carry out one decision through rollouts.services (each service is its own transaction)."""
    snapshot = rollout.plan_snapshot
    if decision.halt:
        with transaction.atomic():
            services.rollout_transition(
                rollout=rollout, to=RolloutState.HALTED, actor=ACTOR, source=SOURCE, reason=decision.reason
            )
            RolloutWave.objects.filter(rollout=rollout, index=rollout.current_wave).update(state=WaveState.HALTED)
            # The gate is closed: nothing not started yet ever starts (a halted rollout is not resumed).
            services.skip_not_started_sites(
                rollout=rollout, reason=f"the rollout halted in wave {rollout.current_wave}"
            )
            if decision.rollback:
                services.rollout_rollback(
                    rollout=rollout, actor=ACTOR, source=SOURCE, reason=f"automatic: {decision.reason}"
                )
        return
    if decision.rollback:
        return  # a requested roll back is handled by drive() before deciding
    rows = {}
    codes = {*decision.skip, *decision.fail, *decision.wait_window, *decision.start}
    if codes:
        rows = {
            row.site.code: row
            for row in SiteRollout.objects.filter(rollout=rollout, site__code__in=codes).select_related(
                "site", "workflow_run"
            )
        }
    deadline = snapshot_site_deadline(snapshot)
    for code in decision.fail:
        row = rows[code]
        last = _last_status(row)
        _end_overdue(
            row,
            to=SiteRolloutState.FAILED,
            reason=f"not healthy within the site deadline of {deadline} s (started {clock(row.started_at)})"
            + (f": {last}" if last else ""),
        )
    for code in decision.skip:
        row = rows[code]
        last = _last_status(row)
        _end_overdue(
            row,
            to=SiteRolloutState.SKIPPED,
            skip_reason=SkipReason.UNREACHABLE,
            reason=f"could not be reached within the site deadline of {deadline} s (started {clock(row.started_at)})"
            + (f": {last}" if last else ""),
        )
    for code in decision.wait_window:
        services.site_rollout_transition(
            site_rollout=rows[code], to=SiteRolloutState.WAITING_WINDOW, actor=ACTOR, source=SOURCE
        )
    if decision.start:
        _start_sites([rows[code] for code in decision.start], deadline=_site_run_deadline(snapshot, now))
    if decision.close_wave is not None:
        services.rollout_wave_close(
            rollout=rollout, index=decision.close_wave, actor=ACTOR, source=SOURCE, bake_until=decision.bake_until
        )
    if decision.succeed:
        services.rollout_transition(
            rollout=rollout, to=RolloutState.SUCCEEDED, actor=ACTOR, source=SOURCE, reason=decision.reason
        )
    if decision.open_wave is not None:
        services.rollout_wave_open(rollout=rollout, index=decision.open_wave, actor=ACTOR, source=SOURCE)
    if decision.await_approval:
        services.rollout_transition(
            rollout=rollout, to=RolloutState.AWAITING_APPROVAL, actor=ACTOR, source=SOURCE, reason=decision.reason
        )


def _site_run_deadline(snapshot: dict[str, Any], now: dt.datetime) -> dt.datetime:
    """The deadline of a site run started now: a little past the driver's skip at the plan's deadline."""
    return now + dt.timedelta(seconds=snapshot_site_deadline(snapshot)) + SITE_RUN_DEADLINE_MARGIN


def _start_sites(site_rollouts: list[SiteRollout], *, deadline: dt.datetime) -> int:
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
                _make_due(run)  # it waits for the window the driver now found open
            else:
                run = workflow_start(kind=SITE_KIND, subject=row, actor=ACTOR, source=SOURCE, deadline=deadline)
            run_ids[row.pk] = run.pk
        return len(services.site_rollouts_start(run_ids=run_ids))


def _last_status(row: SiteRollout) -> str:
    """What the site's run last saw (the converge step's wait reason, or why the push keeps failing)."""
    run = row.workflow_run
    return str((run.context or {}).get("last_status") or "") if run is not None else ""


def _end_overdue(site_rollout: SiteRollout, *, to: str, reason: str, skip_reason: str | None = None) -> None:
    """A site past its deadline: record the verdict first (the cancelled run's hook then finds the site
    done and leaves it), then stop its run."""
    try:
        services.site_rollout_transition(
            site_rollout=site_rollout, to=to, actor=ACTOR, source=SOURCE, error=reason[:2000], skip_reason=skip_reason
        )
    except Conflict:
        return  # it ended meanwhile, with its own verdict
    run = site_rollout.workflow_run
    if run is not None and run.state in ACTIVE_STATES:
        try:
            workflow_cancel(run=run, actor=ACTOR, source=SOURCE, reason=reason)
        except Conflict:
            pass  # it ended meanwhile; its hook found the site done


def _cancel_runs(rollout: Rollout, *, kind: str, waiting_only: bool, reason: str) -> int:
    """Cancel the rollout's active site runs of `kind`; return how many are still active."""
    runs = WorkflowRun.objects.filter(
        kind=kind,
        state__in=ACTIVE_STATES,
        subject_type="rollouts.siterollout",
        subject_id__in=[str(pk) for pk in rollout.site_rollouts.values_list("pk", flat=True)],
    )
    active = 0
    for run in runs:
        active += 1
        if run.cancel_requested or (waiting_only and run.state == RunState.RUNNING):
            continue
        try:
            workflow_cancel(run=run, actor=ACTOR, source=SOURCE, reason=reason)
        except Conflict:
            active -= 1
    return active


def _wind_down(rollout: Rollout) -> Outcome:
    """A cancelled rollout: the not-started sites were skipped by rollout_cancel; cancel the waiting
    site runs and finish once none is active (a run in the middle of a step finishes the step)."""
    active = _cancel_runs(rollout, kind=SITE_KIND, waiting_only=False, reason="the rollout was cancelled")
    if active:
        return Wait(DRIVE_POLL_SECONDS, f"{active} site run(s) stopping")
    return Done({"final_state": rollout.state})


def _roll_back(rollout: Rollout) -> Outcome:
    with transaction.atomic():
        services.skip_not_started_sites(rollout=rollout)
    active = _cancel_runs(rollout, kind=SITE_KIND, waiting_only=False, reason="the rollout is being rolled back")
    if active:
        return Wait(DRIVE_POLL_SECONDS, f"roll back: {active} site run(s) stopping first")
    touched = (
        SiteRollout.objects.filter(rollout=rollout)
        .filter(
            Q(state__in=SITE_TOUCHED_STATES) | Q(state=SiteRolloutState.SKIPPED, skip_reason__in=SKIP_MAY_HOLD_RELEASE)
        )
        .select_related("workflow_run")
    )
    running = 0
    for row in touched:
        run = row.workflow_run
        if run is not None and run.kind == ROLLBACK_KIND:
            running += run.state in ACTIVE_STATES
            continue
        with transaction.atomic():
            try:
                run = workflow_start(kind=ROLLBACK_KIND, subject=row, actor=ACTOR, source=SOURCE)
            except Conflict:
                running += 1
                continue
            services.site_rollout_transition(
                site_rollout=row, to=row.state, actor=ACTOR, source=SOURCE, workflow_run_id=run.pk
            )
        running += 1
    if running:
        return Wait(DRIVE_POLL_SECONDS, f"roll back: {running} site(s) reverting")
    failed = SiteRollout.objects.filter(rollout=rollout, state__in=SITE_TOUCHED_STATES).count()
    reason = rollout.rollback_reason or "rolled back"
    if failed:
        reason = f"{reason}; {failed} site(s) could not be reverted (see their errors)"
    services.rollout_transition(rollout=rollout, to=RolloutState.ROLLED_BACK, actor=ACTOR, source=SOURCE, reason=reason)
    return Done({"final_state": RolloutState.ROLLED_BACK, "not_reverted": failed})


DRIVE = register(
    Workflow(
        kind=DRIVE_KIND,
        steps=[Step("drive", drive, timeout=DRIVE_STEP_TIMEOUT, max_attempts=20, retry_cap=30)],
        deadline=dt.timedelta(days=60),
        exclusive=True,
        description="drives one rollout: starts sites, closes waves, gates, halts and rolls back",
    )
)


# --- one site -------------------------------------------------------------------------------------


def _site_rollout(run: WorkflowRun, *, release: bool = False) -> SiteRollout:
    """The run's SiteRollout with its site and cluster; with `release`, its rollout, release and
    application too (the steps that write; polling needs none of them, and reading the release's
    templates on every poll would cost more than the poll)."""
    related = ["site__cluster", "rollout__release__application", "wave"] if release else ["site__cluster"]
    row = SiteRollout.objects.select_related(*related).filter(pk=run.subject_id).first()
    if row is None:
        raise LookupError(f"site rollout {run.subject_id} no longer exists")
    return row


def _author(rollout: Rollout) -> Author:
    return Author.of(rollout.started_by or rollout.started_by_name or "edgefleet")


def _owned_prefix(row: SiteRollout) -> str:
    return f"apps/{row.rollout.release.application.name}"


def _move(row: SiteRollout, to: str, **fields: Any) -> None:
    services.site_rollout_transition(site_rollout=row, to=to, actor=ACTOR, source=SOURCE, **fields)


def rollout_trailer(row: SiteRollout) -> str:
    """The line every commit of this rollout carries, so git itself can say what the rollout did."""
    return f"{TRAILER_KEY}: {row.rollout_id}"


def site_commit(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Wait for the site's window (when the plan respects windows), render the release and write it
    under `apps/<application>/`: one commit, marked with the rollout's trailer, pushed."""
    row = _site_rollout(run, release=True)
    if row.state in SITE_DONE_STATES:
        return _stop(run, f"the site is already {row.state}")
    closed = _gate_closed(row)
    if closed:
        try:
            pushed = run.attempt > 1 and SiteRepo.for_site(row.site).find_trailer(rollout_trailer(row)) is not None
        except RepoUnavailable as exc:
            return Retry(str(exc))
        if not pushed:  # (a re-run after a crash that had pushed records its push, as if open)
            _move(row, SiteRolloutState.SKIPPED, skip_reason=SkipReason.NOT_STARTED, error=f"not started: {closed}")
            return _stop(run, f"not started: {closed}")
    if row.rollout.plan_snapshot.get("respect_windows"):
        now = timezone.now()
        if not site_window_open(row.site, now):
            next_open = site_next_open(row.site, now)
            if next_open is None:
                why = f"not started: {row.site.code} has no maintenance window left to change it in"
                _move(row, SiteRolloutState.SKIPPED, skip_reason=SkipReason.NOT_STARTED, error=why)
                return _stop(run, why)
            _move(row, SiteRolloutState.WAITING_WINDOW)
            seconds = min(max((next_open - now).total_seconds(), 0.05), WINDOW_RECHECK_SECONDS)
            return Wait(seconds, f"outside the maintenance window; it opens at {next_open.isoformat()}")
        if row.state == SiteRolloutState.WAITING_WINDOW:
            _move(row, SiteRolloutState.COMMITTING)
    release = row.rollout.release
    try:
        # In the renderer process, within the per-site CPU, memory and time limits (rollouts.isolation).
        rendered = ReleaseRenderer.cached(release).render_checked(row.site)
    except RendererUnavailable as exc:
        return Retry(exc.message)
    except FleetError as exc:
        return Fail(f"rendering failed: {exc}")
    prefix = _owned_prefix(row)
    try:
        repo = SiteRepo.for_site(row.site)  # a refused repo_url is a RepoError: the site fails with why
        result = repo.write(
            {f"{prefix}/{path}": text for path, text in rendered.files.items()},
            owned_prefix=prefix,
            message=(
                f"Roll out {release.application.name} {release.version} (rollout {row.rollout_id})\n\n"
                f"{rollout_trailer(row)}"
            ),
            author=_author(row.rollout),
        )
        previous = result.previous if result.changed else _previous_of_unchanged(repo, row, result.revision)
    except RepoUnavailable as exc:
        # Out of attempts, this ends the run with the site skipped as unreachable, not failed.
        ctx["skip"] = SkipReason.UNREACHABLE
        ctx["last_status"] = f"cannot push to the site's repository: {exc}"
        return Retry(str(exc))
    except RepoError as exc:
        return Fail(str(exc))
    ctx.pop("skip", None)
    if result.revision is None:
        return Fail("the repository is still empty after the write")
    _move(row, SiteRolloutState.SYNCING, revision=result.revision, previous_revision=previous or "")
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
    # The edge cannot have applied a commit it has not fetched yet: the first look is one poll later.
    return Done(data, after=SYNC_POLL_SECONDS)


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
        workflow_cancel(run=run, actor=ACTOR, source=SOURCE, reason=reason)
    except Conflict:
        pass
    return Wait(0.05, reason)  # the engine ends a run asked to stop instead of waiting


def _previous_of_unchanged(repo: SiteRepo, row: SiteRollout, head: str | None) -> str | None:
    """The write changed nothing. Either this is a re-run after a crash that came between our push and
    recording it, and the commit carrying our trailer is there (its parent is what came before), or the
    site already had exactly these files (then the head is what to go back to: nothing)."""
    marked = repo.find_trailer(rollout_trailer(row))
    return marked.parent if marked is not None else head


def site_converge(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Poll the edge until it applied the commit (Ready True naming our SHA; Fail with the edge's message
    when it reports the commit failed), then judge the release's health (rollouts.health) until it is
    healthy, or not. An unreachable site is a Wait, not a failure."""
    row = _site_rollout(run)
    sha = ctx["revision"]
    if row.state == SiteRolloutState.SYNCING:
        status = converge.sync_status(row, ctx)
        if isinstance(status, Done | Wait | Retry | Fail):
            return status
        if status is None:
            return converge.waiting(ctx, SYNC_POLL_SECONDS, "the site has no GitOps status yet")
        if status.failed_at(sha):
            return Fail(converge.sync_failure(row, status, sha))
        if not status.applied(sha):
            at = status.last_applied_revision
            return converge.waiting(ctx, SYNC_POLL_SECONDS, f"waiting for the edge to apply {sha[:12]} (at {at})")
    verdict = converge.judge(row, ctx)
    if isinstance(verdict, Wait | Fail):
        return verdict
    if verdict.failed:
        return Fail(verdict.message)
    if verdict.healthy:
        return Done()  # on_finish records the success
    if row.state == SiteRolloutState.SYNCING:
        _move(row, SiteRolloutState.VERIFYING)
    return converge.waiting(ctx, SYNC_POLL_SECONDS, verdict.message)


def site_finished(run: WorkflowRun) -> None:
    """on_finish of a site run: record its end on the SiteRollout, then hand its slot to the next site
    of the wave or, when that is not simply the thing to do, wake the driver."""
    row = SiteRollout.objects.filter(pk=run.subject_id).first()
    if row is None:
        return
    if row.state not in SITE_DONE_STATES:
        if run.state == RunState.SUCCEEDED:
            _move(row, SiteRolloutState.SUCCEEDED, error="")
            try:
                with transaction.atomic():  # a failed hand-over must not undo the success above
                    if _hand_over_slot(row):
                        return
            except (FleetError, DatabaseError):
                log.warning("rollout %s: handing %s's slot over failed", row.rollout_id, row.pk, exc_info=True)
        elif run.state == RunState.FAILED:
            skip = (run.context or {}).get("skip")
            if skip in SkipReason.values:  # the step ended it because the site could not be reached
                _move(row, SiteRolloutState.SKIPPED, error=run.error, skip_reason=skip)
            elif row.state in SITE_IN_FLIGHT_STATES:
                _move(row, SiteRolloutState.FAILED, error=run.error)
            else:
                _move(row, SiteRolloutState.SKIPPED, error=run.error, skip_reason=SkipReason.NOT_STARTED)
        elif row.rollout.rollback_requested_at is None:
            # Cancelled (the rollout was cancelled; sites the driver ended are done before their run is).
            # During a roll back the state is kept, so the roll back knows the site may hold the release.
            reason = SkipReason.NOT_STARTED if row.state in SITE_NOT_STARTED_STATES else SkipReason.CANCELLED
            if SiteRolloutState.SKIPPED in SITE_ROLLOUT_TRANSITIONS[row.state]:
                _move(row, SiteRolloutState.SKIPPED, error=run.error, skip_reason=reason)
    transaction.on_commit(lambda: _wake_driver_on_commit(row.rollout_id), robust=True)


def _hand_over_slot(row: SiteRollout) -> bool:
    """A site of the open wave succeeded: start the wave's next pending site in its place, in the same
    transaction, and tell whether it did. This is the driver's most common decision taken without
    waking it (a rollout of thousands of sites would otherwise cost a driver step per site). Anything
    less plain is left to the driver: a rollout not running, a roll back, windows to respect, failures
    past the threshold, a wave not open, no pending site left (the wave may be complete). One site ends
    and one starts, so the sites in flight never exceed the plan's max_parallel."""
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
    return bool(_start_sites([successor], deadline=_site_run_deadline(snapshot, timezone.now())))


SITE = register(
    Workflow(
        kind=SITE_KIND,
        steps=[
            Step("commit", site_commit, timeout=SITE_STEP_TIMEOUT, queue="io", max_attempts=8, retry_cap=60),
            Step("converge", site_converge, timeout=SITE_STEP_TIMEOUT, queue="io", max_attempts=10, retry_cap=60),
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


# --- rolling one site back ------------------------------------------------------------------------


def rollback_revert(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Put `apps/<application>/` back as it was before the rollout, as a new commit. What came before is
    the revision the forward run recorded; when it recorded none (cancelled or crashed around its push),
    the commit carrying the rollout's trailer tells whether anything was pushed, and on top of what."""
    row = _site_rollout(run, release=True)
    release = row.rollout.release
    message = f"Roll back {release.application.name} {release.version} (rollout {row.rollout_id})"
    author = _author(row.rollout)
    try:
        repo = SiteRepo.for_site(row.site)
        if row.revision:
            previous = row.previous_revision or None
        else:
            marked = repo.find_trailer(rollout_trailer(row))
            if marked is None:
                return Done({"revert_revision": None})  # nothing of this rollout reached the repository
            previous = marked.parent
        if previous:
            result = repo.revert_to(previous, owned_prefix=_owned_prefix(row), message=message, author=author)
        else:  # the repository was empty before: the application's folder goes away
            result = repo.write({}, owned_prefix=_owned_prefix(row), message=message, author=author)
    except RepoUnavailable as exc:
        return Retry(str(exc))
    except RepoError as exc:
        return Fail(str(exc))
    if result.revision is None:
        return Done({"revert_revision": None})
    return Done({"revert_revision": result.revision, "revert_changed": result.changed})


def rollback_sync(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    sha = ctx.get("revert_revision")
    if not sha:
        return Done()
    row = _site_rollout(run)
    if row.state == SiteRolloutState.SKIPPED:
        return Done()  # it could not be reached: the revert waits in its repository for the site's return
    status = converge.sync_status(row)
    if isinstance(status, Done | Wait | Retry | Fail):
        return status
    if status is not None and status.applied(sha):
        return Done()
    # A failing edge keeps retrying the revert: wait for it (until the run's deadline) rather than give up.
    detail = status.message if status is not None and status.failed_at(sha) else "not applied yet"
    return Wait(SYNC_POLL_SECONDS, f"waiting for the edge to apply the revert {sha[:12]}: {detail}")


def rollback_finished(run: WorkflowRun) -> None:
    row = SiteRollout.objects.filter(pk=run.subject_id).first()
    if row is None:
        return
    if run.state == RunState.SUCCEEDED:
        if SiteRolloutState.ROLLED_BACK in SITE_ROLLOUT_TRANSITIONS[row.state]:
            _move(row, SiteRolloutState.ROLLED_BACK)
        elif row.state == SiteRolloutState.SKIPPED and (run.context or {}).get("revert_revision"):
            note = "; the release was reverted in its repository, applied when the site is back"
            _move(row, row.state, error=f"{row.error}{note}"[:2000])
    else:
        _move(row, row.state, error=f"roll back {run.state}: {run.error}"[:2000])
    transaction.on_commit(lambda: _wake_driver_on_commit(row.rollout_id), robust=True)


ROLLBACK = register(
    Workflow(
        kind=ROLLBACK_KIND,
        steps=[
            Step("revert", rollback_revert, timeout=SITE_STEP_TIMEOUT, queue="io", max_attempts=8, retry_cap=60),
            Step("sync", rollback_sync, timeout=SITE_STEP_TIMEOUT, queue="io", max_attempts=10, retry_cap=60),
        ],
        deadline=dt.timedelta(hours=1),
        exclusive=True,
        on_finish=rollback_finished,
        description="puts one site's application folder back at the revision before the rollout",
    )
)
