"""What a person does to ONE site of a rollout: retry it (a failed site back to `pending` in the wave still
open, so the driver starts it again) or skip it with a reason (it never counts as failed, and its run,
if any, is asked to stop). Both need `rollouts.change_siterollout`, are audited on the rollout, and wake
the rollout's driver run; admin and API call these same names.

Kept apart from rollouts.services.records (what the workflow records) on purpose: these are people's
controls, with their own refusals (Conflict naming the state, Invalid naming `reason`).
"""

from django.db import transaction

from fleet.audit.choices import Source
from fleet.audit.services import Actor, actor_name, audit_record
from fleet.errors import Conflict
from fleet.workflows import ACTIVE_STATES, cancel
from rollouts.choices import (
    SITE_DONE_STATES,
    RolloutState,
    SiteRolloutState,
    SkipReason,
)
from rollouts.models import Rollout, SiteRollout
from rollouts.services.actors import require_perm, require_reason
from rollouts.services.records import site_rollout_transition
from rollouts.services.rollouts import rollout_wake

SITE_ACTION_PERMISSION = "rollouts.change_siterollout"
# A site is retried only while its rollout can still start sites.
RETRY_ROLLOUT_STATES = frozenset({RolloutState.RUNNING, RolloutState.PAUSED, RolloutState.AWAITING_APPROVAL})
RETRY_STATES = frozenset({SiteRolloutState.FAILED})
SKIP_STATES = frozenset(
    {
        SiteRolloutState.PENDING,
        SiteRolloutState.WAITING_WINDOW,
        SiteRolloutState.COMMITTING,
        SiteRolloutState.SYNCING,
        SiteRolloutState.VERIFYING,
        SiteRolloutState.UNREACHABLE,
    }
)


def _locked(site_rollout: SiteRollout) -> tuple[SiteRollout, Rollout]:
    rollout = Rollout.objects.select_for_update().get(pk=site_rollout.rollout_id)
    row = SiteRollout.objects.select_for_update(of=("self",)).select_related("site", "wave").get(pk=site_rollout.pk)
    return row, rollout


def site_rollout_retry(*, site_rollout: SiteRollout, actor: Actor, source: Source, reason: str = "") -> SiteRollout:
    """Put a failed site back to `pending` in its rollout: the driver starts it again with a new run
    (the wave's failure count goes down by one). Only in the wave that is open, of a rollout that still
    starts sites and is not being rolled back (Conflict naming the state otherwise)."""
    require_perm(actor, SITE_ACTION_PERMISSION)
    reason = (reason or "").strip()
    with transaction.atomic():
        row, rollout = _locked(site_rollout)
        code = row.site.code
        if row.state not in RETRY_STATES:
            raise Conflict(
                f"site {code} is {row.state} in rollout {rollout.pk}; only a failed site is retried", field="state"
            )
        if rollout.state not in RETRY_ROLLOUT_STATES or rollout.rollback_requested_at is not None:
            why = "being rolled back" if rollout.rollback_requested_at else rollout.state
            raise Conflict(f"rollout {rollout.pk} is {why}; it starts no site again", field="state")
        wave = row.wave
        if wave.index != rollout.current_wave or wave.closed_at is not None:
            raise Conflict(
                f"wave {wave.index} ({wave.name}) of rollout {rollout.pk} is closed; start a new rollout for {code}",
                field="wave",
            )
        before_error = row.error
        row = site_rollout_transition(
            site_rollout=row, to=SiteRolloutState.PENDING, actor=actor, source=source, error=""
        )
        SiteRollout.objects.filter(pk=row.pk).update(started_at=None, finished_at=None, unreachable_since=None)
        audit_record(
            actor=actor,
            verb="site_retry",
            obj=rollout,
            source=source,
            payload={"site": code, "from": SiteRolloutState.FAILED, "error": before_error[:1000], "reason": reason},
        )
        rollout_wake(rollout=rollout, actor=actor, source=source)
    row.refresh_from_db()
    return row


def site_rollout_skip(*, site_rollout: SiteRollout, actor: Actor, source: Source, reason: str = "") -> SiteRollout:
    """Skip one site that has not finished, saying why (Invalid naming `reason` without one): it counts
    as skipped by a person, never as failed, and a run working on it is asked to stop (a roll back
    still reverts it: it may hold the release)."""
    require_perm(actor, SITE_ACTION_PERMISSION)
    reason = require_reason(actor, reason)
    with transaction.atomic():
        row, rollout = _locked(site_rollout)
        code = row.site.code
        if row.state not in SKIP_STATES:
            done = "already done" if row.state in SITE_DONE_STATES else "not skippable"
            raise Conflict(f"site {code} is {row.state} in rollout {rollout.pk} ({done})", field="state")
        if rollout.rollback_requested_at is not None:
            raise Conflict(f"rollout {rollout.pk} is being rolled back; its sites are the roll back's", field="state")
        sentence = f"skipped by {actor_name(actor)}: {reason}"[:2000]
        run = row.workflow_run
        row = site_rollout_transition(
            site_rollout=row,
            to=SiteRolloutState.SKIPPED,
            actor=actor,
            source=source,
            error=sentence,
            skip_reason=SkipReason.BY_PERSON,
        )
        if run is not None and run.state in ACTIVE_STATES and not run.cancel_requested:
            try:
                cancel(run=run, actor=actor, source=source, reason=sentence)
            except Conflict:
                pass  # it ended meanwhile; its hook finds the site done and leaves it
        audit_record(
            actor=actor, verb="site_skip", obj=rollout, source=source, payload={"site": code, "reason": reason}
        )
        rollout_wake(rollout=rollout, actor=actor, source=source)
    return row
