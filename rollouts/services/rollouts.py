"""Starting a rollout, and what people do with it: pause, resume, cancel, approve, roll back. Each call
records the change (rollouts.services.records) and wakes the rollout's driver run (`rollout_wake`),
which carries it out: these services never talk to a site."""

import datetime as dt

from django.db import transaction
from django.utils import timezone

from fleet.audit.choices import Source
from fleet.audit.services import Actor, actor_name, audit_record, field_values
from fleet.errors import Conflict
from fleet.workflows import WorkflowRun, active_run, start, wake
from rollouts import approvals, k3s_policy, planning
from rollouts.choices import (
    DRIVE_KIND,
    ROLLOUT_ACTIVE_STATES,
    ROLLOUT_FINISHED_STATES,
    ROLLOUT_ROLLBACK_STATES,
    ROLLOUT_TRANSITIONS,
    SITE_NOT_STARTED_STATES,
    RolloutState,
    SiteRolloutState,
)
from rollouts.models import Application, Release, Rollout, RolloutPlan, RolloutWave, SiteRollout
from rollouts.rendering import ReleaseRenderer
from rollouts.services.actors import require_perm, require_reason, user_of
from rollouts.services.plans import PLAN_SNAPSHOT_FIELDS, plan_dropped_canaries, rollout_plan_waves
from rollouts.services.records import bulk_site_transition, rollout_transition
from sites.models import Site


def rollout_wake(*, rollout: Rollout, actor: Actor, source: Source) -> WorkflowRun | None:
    """Make the rollout's driver run due now, or start one if none is active and the rollout still has
    something to do. Call inside the transaction that changed the rollout: the wake-up is sent after
    commit. Returns the driver run (None when there is nothing to drive)."""
    run = active_run(rollout)
    if run is not None:
        wake(run)
        return run
    rollout.refresh_from_db(fields=["state", "rollback_requested_at"])
    if rollout.state == RolloutState.ROLLED_BACK:
        return None
    if rollout.state in ROLLOUT_FINISHED_STATES and rollout.rollback_requested_at is None:
        return None
    try:
        return start(kind=DRIVE_KIND, subject=rollout, actor=actor, source=source)
    except Conflict:  # started concurrently: that one drives it
        return active_run(rollout)


# --- starting ---------------------------------------------------------------------------------------


def rollout_start(
    *, plan: RolloutPlan, actor: Actor, source: Source, reason: str = "", at: dt.datetime | None = None
) -> Rollout:
    """Start a rollout of the plan: store its waves and sites (all `pending`), lock the release.

    A person gives a reason (Invalid naming `reason`). The approval gates it gets (rollouts.approvals) are
    fixed in its plan snapshot. Refuses (Conflict) when another unfinished rollout into the same namespace
    holds any of the same sites. Writes nothing to any repository: the rollout workflow does that, site by
    site.
    """
    require_perm(actor, "rollouts.start_rollout")
    reason = require_reason(actor, reason)
    at = at or timezone.now()
    plan = RolloutPlan.objects.select_related("release__application").get(pk=plan.pk)
    # Rendering every site is the slow part: done before the transaction, which holds the write lock.
    sites, waves = _plan_and_check(plan)
    release = plan.release
    application = release.application
    site_by_code = {site.code: site for site in sites}
    with transaction.atomic():
        # Serialize starts into one namespace: every application sharing it is locked.
        list(Application.objects.select_for_update().filter(namespace=application.namespace).values_list("pk"))
        _check_no_overlap(application, [site.pk for site in sites])
        # The plan as checked and rendered above is the plan that runs, with its low-risk mark as it is now.
        fresh = RolloutPlan.objects.select_for_update(of=("self",)).select_related("low_risk_by").get(pk=plan.pk)
        if fresh.updated_at != plan.updated_at:
            raise Conflict(f"rollout plan {plan.name} changed while the rollout was being prepared; start it again")
        gates = approvals.gates_at_start(fresh)
        rollout = Rollout.objects.create(
            plan=plan,
            release=release,
            state=RolloutState.RUNNING,
            current_wave=0,
            plan_snapshot={**field_values(plan, PLAN_SNAPSHOT_FIELDS), **gates},
            started_by=user_of(actor),  # type: ignore[misc]  # any AUTH_USER_MODEL
            started_by_name=actor_name(actor)[:150],
            started_at=at,
            state_changed_at=at,
            n_pending=len(sites),
        )
        wave_rows = RolloutWave.objects.bulk_create(
            [
                RolloutWave(rollout=rollout, index=w.index, name=w.name[:100], size=w.size, n_pending=w.size)
                for w in waves
            ]
        )
        if any(row.pk is None for row in wave_rows):  # backends without RETURNING on bulk insert
            wave_rows = list(rollout.waves.order_by("index"))
        position = 0
        site_rows = []
        for wave, row in zip(waves, wave_rows, strict=True):
            for code in wave.sites:
                site_rows.append(SiteRollout(rollout=rollout, wave=row, site=site_by_code[code], position=position))
                position += 1
        SiteRollout.objects.bulk_create(site_rows, batch_size=500)
        Release.objects.filter(pk=release.pk, locked_at__isnull=True).update(locked_at=at)
        rollout_wake(rollout=rollout, actor=actor, source=source)
        audit_record(
            actor=actor,
            verb="start",
            obj=rollout,
            source=source,
            payload={
                "plan": plan.name,
                "release": str(release),
                "sites": len(sites),
                "waves": [{"name": w.name, "size": w.size} for w in waves],
                "left_out_canaries": plan_dropped_canaries(plan, site_by_code),
                "reason": reason,
                "gates": {k: v for k, v in gates.items() if k != "plan_last_edited_by"},
            },
        )
    return rollout


def _check_no_overlap(application: Application, site_ids: list[int]) -> None:
    clash = (
        SiteRollout.objects.filter(
            rollout__state__in=ROLLOUT_ACTIVE_STATES,
            rollout__release__application__namespace=application.namespace,
            site_id__in=site_ids,
        )
        .select_related("rollout", "site")
        .order_by("rollout_id", "position")
    )
    rows = list(clash[:6])
    if not rows:
        return
    other = rows[0].rollout
    total = clash.filter(rollout=other).count()
    codes = ", ".join(r.site.code for r in rows if r.rollout_id == other.pk)
    raise Conflict(
        f"rollout {other.pk} (plan {other.plan_id}, {other.state}) into namespace {application.namespace} already "
        f"holds {total} of these sites ({codes}{', ...' if total > 5 else ''}); "
        "let it finish, cancel it or roll it back"
    )


def _plan_and_check(plan: RolloutPlan) -> tuple[list[Site], list[planning.PlannedWave]]:
    """`rollout_plan_waves`, and the release rendered for every targeted site in the renderer process
    within FLEET_RENDER_RELEASE_SECONDS: Invalid naming the first site that fails or passes a limit."""
    sites, waves = rollout_plan_waves(plan=plan)
    ReleaseRenderer.for_release(plan.release).check_sites(sites)
    return sites, waves


# --- controlling a rollout (people) -----------------------------------------------------------------


def rollout_pause(*, rollout: Rollout, actor: Actor, source: Source, reason: str = "") -> Rollout:
    """Stop starting sites; sites in flight finish their current change."""
    require_perm(actor, "rollouts.change_rollout")
    with transaction.atomic():
        rollout = rollout_transition(rollout=rollout, to=RolloutState.PAUSED, actor=actor, source=source, reason=reason)
        rollout_wake(rollout=rollout, actor=actor, source=source)
    return rollout


def rollout_resume(*, rollout: Rollout, actor: Actor, source: Source, reason: str = "") -> Rollout:
    """Carry on from where a pause left it (gates such as an approval are checked again)."""
    require_perm(actor, "rollouts.change_rollout")
    with transaction.atomic():
        locked = Rollout.objects.select_for_update().get(pk=rollout.pk)
        if locked.state != RolloutState.PAUSED:
            raise Conflict(
                f"rollout {locked.pk} is {locked.state}; only a paused rollout can be resumed", field="state"
            )
        rollout = rollout_transition(rollout=locked, to=RolloutState.RUNNING, actor=actor, source=source, reason=reason)
        rollout_wake(rollout=rollout, actor=actor, source=source)
        return rollout


def rollout_cancel(*, rollout: Rollout, actor: Actor, source: Source, reason: str = "") -> Rollout:
    """Stop for good: sites not started are skipped; sites that got the release keep it (roll back for that).
    A person gives a reason (Invalid naming `reason`)."""
    require_perm(actor, "rollouts.change_rollout")
    reason = require_reason(actor, reason)
    with transaction.atomic():
        rollout = rollout_transition(
            rollout=rollout, to=RolloutState.CANCELLED, actor=actor, source=source, reason=reason
        )
        bulk_site_transition(rollout, SITE_NOT_STARTED_STATES, SiteRolloutState.SKIPPED)
        rollout_wake(rollout=rollout, actor=actor, source=source)
    rollout.refresh_from_db()
    return rollout


def rollout_approve(*, rollout: Rollout, actor: Actor, source: Source, reason: str = "") -> Rollout:
    """Approve the wave a rollout awaits: its first wave (under the approval policy) or the next one.
    Under the two-person rule the approver is a person who did not start the rollout, edit its plan or
    write its release (rollouts.approvals: Forbidden saying which)."""
    require_perm(actor, "rollouts.approve_rollout")
    with transaction.atomic():
        locked = Rollout.objects.select_for_update().select_related("plan", "release").get(pk=rollout.pk)
        if locked.state != RolloutState.AWAITING_APPROVAL:
            raise Conflict(f"rollout {locked.pk} is {locked.state}; it is not awaiting an approval", field="state")
        approvals.check_approver(rollout=locked, actor=actor)
        current = locked.waves.filter(index=locked.current_wave).first()
        following = (
            current
            if current is not None and current.opened_at is None
            else locked.waves.filter(index=locked.current_wave + 1).first()
        )
        if following is None:
            raise Conflict(f"rollout {locked.pk} has no wave after wave {locked.current_wave} to approve")
        now = timezone.now()
        RolloutWave.objects.filter(pk=following.pk).update(approved_by=user_of(actor), approved_at=now)
        locked.approved_by = user_of(actor)  # type: ignore[assignment]
        locked.save(update_fields=["approved_by"])
        audit_record(
            actor=actor,
            verb="approve",
            obj=locked,
            source=source,
            payload={"wave": following.index, "name": following.name, "reason": reason},
        )
        rollout = rollout_transition(rollout=locked, to=RolloutState.RUNNING, actor=actor, source=source, reason=reason)
        rollout_wake(rollout=rollout, actor=actor, source=source)
        return rollout


def _halt_upgrade(rollout: Rollout, *, actor: Actor, source: Source, reason: str) -> Rollout:
    """A roll back asked of a K3s upgrade: halt it (no site is reverted); Conflict when it cannot halt."""
    note = "a K3s upgrade is not reverted (K3s does not downgrade safely); the rollout is halted instead"
    if rollout.state == RolloutState.HALTED:
        audit_record(actor=actor, verb="rollback", obj=rollout, source=source, payload={"reason": reason, "note": note})
        return rollout
    if RolloutState.HALTED not in ROLLOUT_TRANSITIONS[rollout.state]:
        raise Conflict(
            f"rollout {rollout.pk} is {rollout.state}: a K3s upgrade is not rolled back (K3s does not downgrade "
            "safely) and this rollout cannot be halted; sites left cordoned need a person (docs/OPERATIONS.md)",
            field="state",
        )
    why = f"roll back asked: {note}" + (f" ({reason})" if reason else "")
    halted = rollout_transition(rollout=rollout, to=RolloutState.HALTED, actor=actor, source=source, reason=why)
    rollout_wake(rollout=halted, actor=actor, source=source)
    return halted


def rollout_rollback(*, rollout: Rollout, actor: Actor, source: Source, reason: str = "") -> Rollout:
    """Ask for every site that got the release to be put back at its previous revision.

    Records the request (and stops the rollout from starting more sites); the rollout workflow carries
    it out site by site and then moves the rollout to `rolled_back`. A person gives a reason (Invalid
    naming `reason`).

    A K3s upgrade (rollouts.k3s) is not reverted, K3s does not downgrade safely: the request halts the
    rollout instead, and sites left cordoned wait for a person (docs/OPERATIONS.md).
    """
    require_perm(actor, "rollouts.change_rollout")
    reason = require_reason(actor, reason)
    with transaction.atomic():
        locked = Rollout.objects.select_for_update().select_related("release__application").get(pk=rollout.pk)
        if k3s_policy.is_k3s(locked.release.application):
            return _halt_upgrade(locked, actor=actor, source=source, reason=reason)
        if locked.state not in ROLLOUT_ROLLBACK_STATES:
            raise Conflict(f"rollout {locked.pk} is {locked.state}; it cannot be rolled back", field="state")
        if locked.rollback_requested_at is not None:
            raise Conflict(
                f"rollout {locked.pk}: a roll back was already requested at {locked.rollback_requested_at.isoformat()}",
                field="state",
            )
        locked.rollback_requested_at = timezone.now()
        locked.rollback_requested_by = actor_name(actor)[:150]
        locked.rollback_reason = reason[:500]
        locked.save(update_fields=["rollback_requested_at", "rollback_requested_by", "rollback_reason"])
        audit_record(actor=actor, verb="rollback", obj=locked, source=source, payload={"reason": reason})
        rollout_wake(rollout=locked, actor=actor, source=source)
    return locked
