"""The rollout's records, kept by the rollout workflow (and by the people's controls that change them):
the rollout's and its waves' states, each site's state, and the counters on the rollout and its waves,
kept exact with F()-expressions in the transaction of every change, so lists never count rows."""

import datetime as dt
from collections import Counter
from typing import Any

from django.db import transaction
from django.db.models import Count, F
from django.utils import timezone

from fleet.audit.choices import Source
from fleet.audit.services import Actor, audit_record
from fleet.errors import Conflict
from fleet.transitions import StateMachine, lock_for_move, require_state, state_transition
from rollouts.choices import (
    ROLLOUT_FINISHED_STATES,
    ROLLOUT_TRANSITIONS,
    SITE_DONE_STATES,
    SITE_IN_FLIGHT_STATES,
    SITE_NOT_STARTED_STATES,
    SITE_ROLLOUT_TRANSITIONS,
    RolloutState,
    SiteRolloutState,
    SkipReason,
    WaveState,
)
from rollouts.models import Rollout, RolloutWave, SiteRollout, counter_field, skip_counter_field

ROLLOUT_MACHINE: StateMachine[Rollout] = StateMachine(
    table=ROLLOUT_TRANSITIONS,
    states=RolloutState.values,
    kind="rollout",
    subject=lambda rollout: f"rollout {rollout.pk}",
    changed_at="state_changed_at",
)
SITE_ROLLOUT_MACHINE: StateMachine[SiteRollout] = StateMachine(
    table=SITE_ROLLOUT_TRANSITIONS,
    states=SiteRolloutState.values,
    kind="site rollout",
    subject=lambda row: f"site rollout {row.pk}",
)


def rollout_transition(*, rollout: Rollout, to: str, actor: Actor, source: Source, reason: str = "") -> Rollout:
    """Move a rollout to `to` if ROLLOUT_TRANSITIONS allows it (Conflict naming the state otherwise)."""

    def record(locked: Rollout, now: dt.datetime) -> list[str]:
        fields = []
        if to == RolloutState.HALTED:
            locked.halted_reason = reason[:500]
            fields.append("halted_reason")
        if to in ROLLOUT_FINISHED_STATES:
            locked.finished_at = now
            fields.append("finished_at")
        return fields

    return state_transition(
        rollout, to=to, machine=ROLLOUT_MACHINE, actor=actor, source=source, reason=reason, record=record
    )


def rollout_wave_open(*, rollout: Rollout, index: int, actor: Actor, source: Source) -> RolloutWave:
    """Open wave `index` and make it the rollout's current wave (idempotent)."""
    with transaction.atomic():
        locked = Rollout.objects.select_for_update().get(pk=rollout.pk)
        wave = locked.waves.select_for_update().get(index=index)
        if wave.opened_at is not None:
            return wave
        if index > 0 and locked.waves.filter(index=index - 1, closed_at__isnull=True).exists():
            raise Conflict(f"rollout {locked.pk}: wave {index - 1} is still open", field="current_wave")
        wave.opened_at = timezone.now()
        wave.state = WaveState.OPEN
        wave.save(update_fields=["opened_at", "state"])
        locked.current_wave = index
        locked.save(update_fields=["current_wave"])
        audit_record(actor=actor, verb="open_wave", obj=locked, source=source, payload={"wave": index})
    return wave


def rollout_wave_close(
    *, rollout: Rollout, index: int, actor: Actor, source: Source, bake_until: dt.datetime | None = None
) -> RolloutWave:
    """Close wave `index` (every site done), with the time its bake ends (idempotent)."""
    with transaction.atomic():
        wave = RolloutWave.objects.select_for_update().get(rollout=rollout, index=index)
        if wave.closed_at is not None:
            return wave
        wave.closed_at = timezone.now()
        wave.bake_until = bake_until
        wave.state = WaveState.CLOSED
        wave.save(update_fields=["closed_at", "bake_until", "state"])
        audit_record(
            actor=actor,
            verb="close_wave",
            obj=rollout,
            source=source,
            payload={
                "wave": index,
                "counts": wave.counts,
                "bake_until": bake_until.isoformat() if bake_until else None,
            },
        )
    return wave


def site_rollout_transition(
    *,
    site_rollout: SiteRollout,
    to: str,
    actor: Actor,
    source: Source,
    error: str | None = None,
    revision: str | None = None,
    previous_revision: str | None = None,
    workflow_run_id: int | None = None,
    skip_reason: str | None = None,
) -> SiteRollout:
    """Move one site of a rollout to `to` (SITE_ROLLOUT_TRANSITIONS), keeping the wave's and the rollout's
    counters exact with F()-expressions in the same transaction. Moving to the current state only
    updates the other fields, so a workflow step may call it twice. A site moved to `skipped` records
    why (`skip_reason`, a SkipReason; never started when not given): failed sites count against the
    threshold, skipped ones do not, and the counters say which skipped sites could not be reached."""
    with transaction.atomic():
        row = lock_for_move(site_rollout, to=to, machine=SITE_ROLLOUT_MACHINE)
        before = row.state
        now = timezone.now()
        fields = []
        for name, value in (
            ("error", error),
            ("revision", revision),
            ("previous_revision", previous_revision),
            ("workflow_run_id", workflow_run_id),
        ):
            if value is not None:
                setattr(row, name, value)
                fields.append(name)
        if before != to:
            row.state = to
            fields.append("state")
            if to in SITE_IN_FLIGHT_STATES and row.started_at is None:
                row.started_at = now
                fields.append("started_at")
            if to in SITE_DONE_STATES:
                row.finished_at = now
                fields.append("finished_at")
            if to == SiteRolloutState.UNREACHABLE or before == SiteRolloutState.UNREACHABLE:
                # Kept when it ends unreachable (skipped, failed): the page says since when.
                if to == SiteRolloutState.UNREACHABLE or to not in SITE_DONE_STATES:
                    row.unreachable_since = now if to == SiteRolloutState.UNREACHABLE else None
                    fields.append("unreachable_since")
            reason = None
            if to == SiteRolloutState.SKIPPED:
                reason = skip_reason or SkipReason.NOT_STARTED
                require_state(reason, states=SkipReason.values, kind="skip reason")
                row.skip_reason = reason
                fields.append("skip_reason")
            _move_counters(row.rollout_id, {row.wave_id: Counter({before: 1})}, to, skip_reason=reason)
        if fields:
            row.save(update_fields=fields)
        if before != to and to in (SiteRolloutState.FAILED, SiteRolloutState.SKIPPED, SiteRolloutState.ROLLED_BACK):
            # In-progress steps are recorded by the workflow's StepRuns; the outcomes people act on are audited.
            payload: dict[str, Any] = {"site": row.site.code, "from": before, "error": row.error[:1000]}
            if to == SiteRolloutState.FAILED:
                payload["counts_against_threshold"] = True
            if to == SiteRolloutState.SKIPPED:
                payload.update(skip_reason=row.skip_reason, counts_against_threshold=False)
            audit_record(actor=actor, verb="site_" + to, obj=row.rollout, source=source, payload=payload)
    return row


def site_rollouts_start(*, run_ids: dict[int, int]) -> list[SiteRollout]:
    """Move the not-started sites `run_ids` names ({site rollout id: workflow run id}) to `committing`,
    each with the run that drives it: one locking read, one UPDATE per counter row and one for the
    sites, however many start together (the driver opening a wave starts `max_parallel` at once).
    Rows that are no longer waiting to start are left alone; returns the ones moved."""
    with transaction.atomic():
        rows = list(
            SiteRollout.objects.select_for_update()
            .filter(pk__in=run_ids, state__in=SITE_NOT_STARTED_STATES)
            .order_by("position")
        )
        if not rows:
            return []
        now = timezone.now()
        moved: dict[int, Counter[str]] = {}
        for row in rows:
            moved.setdefault(row.wave_id, Counter())[row.state] += 1
            row.state, row.workflow_run_id = SiteRolloutState.COMMITTING, run_ids[row.pk]
            row.started_at = row.started_at or now
        SiteRollout.objects.bulk_update(rows, ["state", "workflow_run_id", "started_at"])
        _move_counters(rows[0].rollout_id, moved, SiteRolloutState.COMMITTING)
    return rows


def _move_counters(rollout_id: int, moved: dict[int, Counter[str]], to: str, *, skip_reason: str | None = None) -> None:
    """Shift counters from the states in `moved` (per wave id) to `to`, on the waves and on the rollout;
    sites moving to `skipped` also count under their `skip_reason` (skipped is final, so those
    counters only grow)."""
    total: Counter[str] = Counter()
    for wave_id, by_state in moved.items():
        updates: dict[str, Any] = {}
        for state, n in by_state.items():
            if state != to and n:
                updates[counter_field(state)] = F(counter_field(state)) - n
                total[state] += n
        count = sum(n for state, n in by_state.items() if state != to)
        if count:
            updates[counter_field(to)] = F(counter_field(to)) + count
            if skip_reason:
                updates[skip_counter_field(skip_reason)] = F(skip_counter_field(skip_reason)) + count
            RolloutWave.objects.filter(pk=wave_id).update(**updates)
    if total:
        updates = {counter_field(state): F(counter_field(state)) - n for state, n in total.items()}
        updates[counter_field(to)] = F(counter_field(to)) + sum(total.values())
        if skip_reason:
            updates[skip_counter_field(skip_reason)] = F(skip_counter_field(skip_reason)) + sum(total.values())
        Rollout.objects.filter(pk=rollout_id).update(**updates)


def bulk_site_transition(
    rollout: Rollout, from_states: frozenset[str], to: str, *, error: str | None = None, skip_reason: str | None = None
) -> int:
    """Move every site of the rollout in `from_states` to `to`, counters included. Returns how many.
    Sites skipped this way never started: they are skipped as such, with `error` (default: the
    rollout's state) as the sentence."""
    moving = SiteRollout.objects.filter(rollout=rollout, state__in=from_states)
    moved: dict[int, Counter[str]] = {}
    for row in moving.values("wave_id", "state").annotate(n=Count("id")):
        moved.setdefault(row["wave_id"], Counter())[row["state"]] += row["n"]
    fields: dict[str, Any] = {"state": to}
    if to in SITE_DONE_STATES:
        fields["finished_at"] = timezone.now()
    if to == SiteRolloutState.SKIPPED:
        skip_reason = skip_reason or SkipReason.NOT_STARTED
        fields["skip_reason"] = skip_reason
        fields["error"] = error if error is not None else f"not started: the rollout was {rollout.state}"
    count = moving.update(**fields)
    _move_counters(rollout.pk, moved, to, skip_reason=skip_reason)
    return count


def skip_not_started_sites(*, rollout: Rollout, reason: str = "the rollout is being rolled back") -> int:
    """Skip every site of the rollout that has not started (a roll back or a halt starts no more sites),
    as never started, with `reason` in their sentence."""
    with transaction.atomic():
        Rollout.objects.select_for_update().filter(pk=rollout.pk).values_list("pk").first()
        return bulk_site_transition(
            rollout, SITE_NOT_STARTED_STATES, SiteRolloutState.SKIPPED, error=f"not started: {reason}"[:2000]
        )


def rollout_recount(*, rollout: Rollout) -> bool:
    """Recompute the counters from the rows (a periodic reconcile's repair). Returns whether any was wrong."""
    with transaction.atomic():
        locked = Rollout.objects.select_for_update().get(pk=rollout.pk)
        per_wave: dict[int, Counter[str]] = {}
        rows = SiteRollout.objects.filter(rollout=locked).values("wave_id", "state", "skip_reason")
        for row in rows.annotate(n=Count("id")):
            counter = per_wave.setdefault(row["wave_id"], Counter())
            counter[counter_field(row["state"])] += row["n"]
            if row["state"] == SiteRolloutState.SKIPPED and row["skip_reason"]:
                counter[skip_counter_field(row["skip_reason"])] += row["n"]
        columns = [counter_field(s) for s in SiteRolloutState.values] + [
            skip_counter_field(r) for r in SkipReason.values
        ]
        wrong = False
        overall: Counter[str] = Counter()
        for wave in locked.waves.select_for_update():
            actual = per_wave.get(wave.pk, Counter())
            overall.update(actual)
            if any(getattr(wave, c) != actual.get(c, 0) for c in columns):
                wrong = True
                RolloutWave.objects.filter(pk=wave.pk).update(**{c: actual.get(c, 0) for c in columns})
        if any(getattr(locked, c) != overall.get(c, 0) for c in columns):
            wrong = True
            Rollout.objects.filter(pk=locked.pk).update(**{c: overall.get(c, 0) for c in columns})
    return wrong
