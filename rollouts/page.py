"""What the rollout page shows, read in a fixed number of queries whatever the size of the rollout: the
counters of the rollout and its waves (never a count of rows), the first few sites that need a person
(failed, unreachable, slowest in flight), the reasons people and the workflow gave (audit rows), and who
may approve. `rollout_page()` reads; the rest are pure functions of what it read, tested on their own.
"""

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db.models import Q

from fleet.admin_display import duration
from fleet.audit.models import AuditEvent
from rollouts import approvals
from rollouts.choices import ROLLOUT_FINISHED_STATES, SITE_IN_FLIGHT_STATES, RolloutState, SiteRolloutState
from rollouts.models import Rollout, RolloutWave, SiteCounters, SiteRollout
from rollouts.planning import describe_gates, describe_threshold, snapshot_threshold

# The bar's order (left to right) and colours: done first, then in flight, then what has not started,
# drawn pale so that a rollout that has not started reads as empty, not full.
BAR_STATES: tuple[tuple[str, str, str], ...] = (
    (SiteRolloutState.SUCCEEDED, "succeeded", "#1e7e34"),
    (SiteRolloutState.FAILED, "failed", "#b00020"),
    (SiteRolloutState.ROLLED_BACK, "rolled back", "#6f42c1"),
    (SiteRolloutState.SKIPPED, "skipped", "#8a8a8a"),
    (SiteRolloutState.UNREACHABLE, "waiting: unreachable", "#d9822b"),
    (SiteRolloutState.VERIFYING, "verifying", "#1f5fa8"),
    (SiteRolloutState.SYNCING, "syncing", "#4a90d9"),
    (SiteRolloutState.COMMITTING, "committing", "#8fb8e8"),
    (SiteRolloutState.WAITING_WINDOW, "waiting for its window", "#f0c674"),
    (SiteRolloutState.PENDING, "pending", "#e4e4e4"),
)
# Sites a person may act on, listed per kind on the page (the rest are in the site rollout list).
ATTENTION_ROWS = 25
REASON_ROWS = 20
REASON_VERBS = ("start", "transition", "approve", "rollback", "site_retry", "site_skip")


@dataclass(frozen=True)
class Segment:
    state: str
    label: str
    colour: str
    count: int
    percent: float


@dataclass(frozen=True)
class Bar:
    """A stacked bar of site states and the sentence under it ("3 succeeded, 1 failed, 9 pending of 13")."""

    segments: tuple[Segment, ...]
    total: int
    summary: str


def bar(counters: SiteCounters | dict[str, int], total: int | None = None) -> Bar:
    """The bar of a rollout or a wave from its counters: every state drawn as itself (pending as pending,
    rolled back as rolled back), widths in percent of the total."""
    counts = counters if isinstance(counters, dict) else counters.counts
    total = sum(counts.values()) if total is None else total
    segments = tuple(
        Segment(state, label, colour, counts.get(state, 0), round(100 * counts.get(state, 0) / total, 2))
        for state, label, colour in BAR_STATES
        if total and counts.get(state, 0)
    )
    summary = ", ".join(f"{s.count} {s.label}" for s in segments)
    return Bar(segments, total, f"{summary} of {total}" if total else "no sites")


def estimate_left(*, done: int, total: int, elapsed: float, waves_left: int, bake_seconds: int) -> float | None:
    """Seconds left at the pace so far plus the bakes still to come (approvals and windows not counted);
    None before any site is done."""
    if done <= 0 or elapsed <= 0 or total <= done:
        return None if total > done else 0.0
    return elapsed * (total - done) / done + waves_left * bake_seconds


@dataclass(frozen=True)
class WaveLine:
    wave: RolloutWave
    bar: Bar
    bake_left: float | None
    approval: str


@dataclass(frozen=True)
class Attention:
    """A site a person may want to act on, with the sentence that says why."""

    row: SiteRollout
    why: str
    since: dt.datetime | None
    can_retry: bool
    can_skip: bool


@dataclass
class RolloutPage:
    rollout: Rollout
    finished: bool
    bar: Bar
    waves: list[WaveLine]
    elapsed: float | None
    left: float | None
    bake: tuple[RolloutWave, float] | None
    approval: str
    attention: list[Attention]
    reasons: list[dict[str, Any]]
    plan_rows: list[tuple[str, str]]
    gates: dict[str, Any] = field(default_factory=dict)


def rollout_page(rollout_id: int, now: dt.datetime) -> RolloutPage:
    """Everything the page shows, in seven queries or fewer (rollout, waves, three site lists, audit,
    approvers), whatever the number of sites."""
    rollout = Rollout.objects.select_related(
        "plan", "release__application", "release__created_by", "started_by", "approved_by"
    ).get(pk=rollout_id)
    waves = list(RolloutWave.objects.filter(rollout=rollout).select_related("approved_by").order_by("index"))
    snapshot = rollout.plan_snapshot or {}
    finished = rollout.state in ROLLOUT_FINISHED_STATES and (
        rollout.rollback_requested_at is None or rollout.state == RolloutState.ROLLED_BACK
    )
    end = rollout.finished_at if finished and rollout.finished_at else now
    elapsed = (end - rollout.started_at).total_seconds() if rollout.started_at else None
    bake_seconds = int(snapshot.get("bake_seconds") or 0)
    waves_left = sum(1 for w in waves if w.index > rollout.current_wave)
    left = (
        None
        if finished or elapsed is None
        else estimate_left(
            done=rollout.done, total=rollout.total, elapsed=elapsed, waves_left=waves_left, bake_seconds=bake_seconds
        )
    )
    approval = approval_needed(rollout, waves) if rollout.state == RolloutState.AWAITING_APPROVAL else ""
    following = awaited_wave(rollout, waves) if approval else None
    awaited = following.index if following is not None else None
    lines = []
    bake = None
    for wave in waves:
        bake_left = (wave.bake_until - now).total_seconds() if wave.bake_until and wave.bake_until > now else None
        if bake_left is not None and not finished and bake is None:
            bake = (wave, bake_left)
        lines.append(WaveLine(wave, bar(wave, wave.size), bake_left, _wave_approval(wave, awaited)))
    return RolloutPage(
        rollout=rollout,
        finished=finished,
        bar=bar(rollout),
        waves=lines,
        elapsed=elapsed,
        left=left,
        bake=bake,
        approval=approval,
        attention=attention(rollout, now),
        reasons=reasons(rollout),
        plan_rows=plan_rows(snapshot),
        gates=describe_gates(snapshot),
    )


def _wave_approval(wave: RolloutWave, awaited: int | None) -> str:
    if wave.approved_by_id:
        who = wave.approved_by.get_username() if wave.approved_by else "?"
        return f"approved by {who}"
    return "awaiting approval" if wave.index == awaited else ""


def awaited_wave(rollout: Rollout, waves: list[RolloutWave]) -> RolloutWave | None:
    """The wave an approval would open: the current one if it never opened (the first, under the
    approval policy), else the next."""
    current = next((w for w in waves if w.index == rollout.current_wave), None)
    if current is not None and current.opened_at is None:
        return current
    return next((w for w in waves if w.index == rollout.current_wave + 1), None)


def approval_needed(rollout: Rollout, waves: list[RolloutWave]) -> str:
    """Which wave waits for an approval and who may give it: holders of rollouts.approve_rollout, less
    the people the two-person rule excludes (named, with why)."""
    following = awaited_wave(rollout, waves)
    which = f"wave {following.index} ({following.name}, {following.size} sites)" if following else "the next wave"
    perm = Permission.objects.filter(codename="approve_rollout", content_type__app_label="rollouts").first()
    users = get_user_model().objects.filter(is_active=True, is_staff=True)
    users = users.filter(Q(is_superuser=True) | Q(user_permissions=perm) | Q(groups__permissions=perm)).distinct()
    excluded: dict[int, str] = {}
    if rollout.plan_snapshot.get("two_person_rule"):
        excluded = {uid: why for uid, why in reversed(approvals.excluded_approvers(rollout))}
    names = [u.get_username() for u in users.order_by("username")[:50] if u.pk not in excluded]
    who = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "") or "nobody yet"
    sentence = f"{which} waits for an approval (rollouts.approve_rollout): {who}"
    if excluded:
        known = dict(get_user_model().objects.filter(pk__in=excluded).values_list("pk", "username"))
        sentence += "; not (two-person rule): " + "; ".join(
            f"{known.get(uid, f'user {uid}')} ({why})" for uid, why in excluded.items()
        )
    return sentence


def attention(rollout: Rollout, now: dt.datetime) -> list[Attention]:
    """Failed sites (newest first), unreachable sites (longest first), and the in-flight sites that have
    been at it longest with what they wait for: three short index reads, ATTENTION_ROWS each."""
    base = SiteRollout.objects.filter(rollout=rollout).select_related("site", "wave")
    open_wave = rollout.state in (RolloutState.RUNNING, RolloutState.PAUSED, RolloutState.AWAITING_APPROVAL)
    rows: list[Attention] = []
    if rollout.n_failed:
        for row in base.filter(state=SiteRolloutState.FAILED).order_by("-finished_at")[:ATTENTION_ROWS]:
            retry = open_wave and row.wave.index == rollout.current_wave and row.wave.closed_at is None
            rows.append(Attention(row, row.error or "failed", row.finished_at, retry, False))
    if rollout.n_unreachable:
        for row in base.filter(state=SiteRolloutState.UNREACHABLE).order_by("unreachable_since")[:ATTENTION_ROWS]:
            rows.append(Attention(row, row.error or "the site does not answer", row.unreachable_since, False, True))
    flying = {SiteRolloutState.COMMITTING, SiteRolloutState.SYNCING, SiteRolloutState.VERIFYING}
    if any(rollout.counts[s] for s in flying):
        in_flight = base.filter(state__in=flying & SITE_IN_FLIGHT_STATES).select_related("workflow_run")
        for row in in_flight.order_by("started_at")[:ATTENTION_ROWS]:
            run = row.workflow_run
            why = str((run.context or {}).get("last_status") or "") if run is not None else ""
            rows.append(Attention(row, why or row.get_state_display().lower(), row.started_at, False, True))
    return rows


def reasons(rollout: Rollout) -> list[dict[str, Any]]:
    """The last changes people and the workflow made, with their reasons (pause, resume, approve, halt,
    roll back, one site retried or skipped), newest first."""
    events = AuditEvent.objects.filter(
        object_type="rollouts.rollout", object_id=str(rollout.pk), verb__in=REASON_VERBS
    ).order_by("-id")[:REASON_ROWS]
    shown = []
    for event in events:
        payload = event.payload or {}
        what = event.verb.replace("_", " ")
        if event.verb == "transition":
            what = {"paused": "pause", "running": "resume" if payload.get("from") == "paused" else "run"}.get(
                str(payload.get("to")), str(payload.get("to", "")).replace("_", " ")
            )
        if event.verb in ("site_retry", "site_skip"):
            what = f"{what} {payload.get('site', '')}"
        shown.append(
            {"at": event.created_at, "who": event.actor_repr, "what": what, "reason": payload.get("reason", "")}
        )
    return shown


PLAN_LABELS: tuple[tuple[str, str], ...] = (
    ("max_parallel", "sites changed at once"),
    ("bake_seconds", "bake between waves"),
    ("require_approval", "approval between waves"),
    ("approve_first_wave", "approval before the first wave"),
    ("two_person_rule", "two-person rule"),
    ("respect_windows", "only in maintenance windows"),
    ("site_deadline_seconds", "site deadline"),
    ("progress_deadline_seconds", "Deployment progress deadline"),
    ("min_success_seconds", "healthy this long to succeed"),
    ("auto_rollback", "roll back automatically when halted"),
    ("allow_unreachable_waves", "a wave of only unreachable sites passes"),
    ("low_risk", "low-risk (no approval gates)"),
)
SECONDS = {"bake_seconds", "site_deadline_seconds", "progress_deadline_seconds", "min_success_seconds"}


def plan_rows(snapshot: dict[str, Any]) -> list[tuple[str, str]]:
    """The plan as it was at start, one (setting, value) row each in words: no JSON."""
    rows: list[tuple[str, str]] = []
    target = snapshot.get("target") or {}
    if "labels" in target:
        rows.append(("target", f"sites labelled {target['labels']}"))
    elif "sites" in target:
        rows.append(("target", f"{len(target['sites'])} named site(s): {', '.join(target['sites'][:10])}"))
    else:
        rows.append(("target", "every site"))
    for i, wave in enumerate(snapshot.get("waves") or []):
        size = (
            f"{len(wave['sites'])} named site(s)"
            if "sites" in wave
            else (f"up to {wave['percent']}% of the sites" if "percent" in wave else f"up to {wave.get('count')} sites")
        )
        rows.append((f"wave {i}", f"{wave.get('name') or f'wave {i}'}: {size}"))
    rows.append(("failure threshold", f"more than {describe_threshold(snapshot_threshold(snapshot))} failed halts"))
    for key, label in PLAN_LABELS:
        if key not in snapshot:
            continue
        value = snapshot[key]
        if isinstance(value, bool):
            text = "yes" if value else "no"
        elif key in SECONDS:
            text = duration(value) if value else ("each Deployment's own" if key.startswith("progress") else "none")
        else:
            text = str(value)
        rows.append((label, text))
    return rows
