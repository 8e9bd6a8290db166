"""`rollout.drive`: one run per rollout, whose single step applies rollouts.progress.decide until there
is nothing to decide, then waits; it starts site runs, closes and opens waves, halts, awaits approvals,
winds a cancelled rollout down and carries out a roll back (rollouts.workflows.rollback). It is woken
by the services on every change people make and by site runs that end. docs/ARCHITECTURE.md
("Rollouts") tells why the driver is a workflow and how it and the site runs share the work."""

import datetime as dt
from typing import Any

from django.db import transaction
from django.utils import timezone

from fleet.errors import Conflict
from fleet.workflows import ACTIVE_STATES, Done, Fail, Outcome, Step, Wait, Workflow, WorkflowRun, cancel, register
from rollouts import services
from rollouts.choices import (
    DRIVE_KIND,
    ROLLOUT_FINISHED_STATES,
    RolloutState,
    SiteRolloutState,
    SkipReason,
    WaveState,
)
from rollouts.health import clock
from rollouts.models import Rollout, RolloutWave, SiteRollout
from rollouts.planning import snapshot_site_deadline
from rollouts.progress import Decision, decide
from rollouts.selectors import rollout_progress_view
from rollouts.workflows.common import ACTOR, DRIVE_IDLE_SECONDS, DRIVE_POLL_SECONDS, DRIVE_STEP_TIMEOUT, SOURCE
from rollouts.workflows.rollback import roll_back
from rollouts.workflows.site import cancel_site_runs, site_run_deadline, start_site_runs

# Decisions applied in one driver step before it yields (a huge wave still makes progress in steps).
MAX_DECISIONS_PER_STEP = 20


def drive(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Apply decide() until idle; Wait while the rollout has a future, Done once it has none."""
    rollout = run.get_subject()
    if rollout is None:
        return Fail("the rollout no longer exists")
    for decisions in range(MAX_DECISIONS_PER_STEP):
        if decisions:
            rollout.refresh_from_db()
        if rollout.rollback_requested_at is not None and rollout.state != RolloutState.ROLLED_BACK:
            return roll_back(rollout)
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
        _end_overdue(rows[code], deadline, "not healthy", to=SiteRolloutState.FAILED)
    for code in decision.skip:
        _end_overdue(
            rows[code],
            deadline,
            "could not be reached",
            to=SiteRolloutState.SKIPPED,
            skip_reason=SkipReason.UNREACHABLE,
        )
    for code in decision.wait_window:
        services.site_rollout_transition(
            site_rollout=rows[code], to=SiteRolloutState.WAITING_WINDOW, actor=ACTOR, source=SOURCE
        )
    if decision.start:
        start_site_runs([rows[code] for code in decision.start], deadline=site_run_deadline(snapshot, now))
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


def _overdue_reason(row: SiteRollout, deadline: int, verdict: str) -> str:
    """Why a site past its deadline ends: the verdict, when it started, and what its run last saw (the
    converge step's wait reason, or why the push keeps failing)."""
    reason = f"{verdict} within the site deadline of {deadline} s (started {clock(row.started_at)})"
    run = row.workflow_run
    last = str((run.context or {}).get("last_status") or "") if run is not None else ""
    return f"{reason}: {last}" if last else reason


def _end_overdue(
    site_rollout: SiteRollout, deadline: int, verdict: str, *, to: str, skip_reason: str | None = None
) -> None:
    """A site past its `deadline` (seconds): record the `verdict` first (the cancelled run's hook then finds
    the site done and leaves it), then stop its run."""
    reason = _overdue_reason(site_rollout, deadline, verdict)
    try:
        services.site_rollout_transition(
            site_rollout=site_rollout, to=to, actor=ACTOR, source=SOURCE, error=reason[:2000], skip_reason=skip_reason
        )
    except Conflict:
        return  # it ended meanwhile, with its own verdict
    run = site_rollout.workflow_run
    if run is not None and run.state in ACTIVE_STATES:
        try:
            cancel(run=run, actor=ACTOR, source=SOURCE, reason=reason)
        except Conflict:
            pass  # it ended meanwhile; its hook found the site done


def _wind_down(rollout: Rollout) -> Outcome:
    """A cancelled rollout: the not-started sites were skipped by rollout_cancel; cancel the waiting
    site runs and finish once none is active (a run in the middle of a step finishes the step)."""
    active = cancel_site_runs(rollout, reason="the rollout was cancelled")
    if active:
        return Wait(DRIVE_POLL_SECONDS, f"{active} site run(s) stopping")
    return Done({"final_state": rollout.state})


DRIVE = register(
    Workflow(
        kind=DRIVE_KIND,
        steps=[Step("drive", drive, timeout=DRIVE_STEP_TIMEOUT, max_attempts=20, retry_cap=30)],
        deadline=dt.timedelta(days=60),
        exclusive=True,
        description="drives one rollout: starts sites, closes waves, gates, halts and rolls back",
    )
)
