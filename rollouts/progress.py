"""What a running rollout should do next: a pure function of its waves, its sites' states and the time.

The rollout workflow calls `decide(view, now)` whenever a site finishes or a timer fires, applies the
decision through rollouts.services, and calls it again until the decision is idle (then it waits for
`wake_at` or the next site event). Keeping the rules here, away from the database and the workflow
engine, lets them be tested exhaustively.

One decision does one step of the rollout's life:

1. A roll back was requested (or ordered by the plan when a wave halts): `rollback`.
2. The rollout is not running (paused, awaiting approval, finished): nothing.
3. The current wave was never opened (a new rollout): `open_wave`, or with `approve_first_wave` (the
   approval policy, rollouts.approvals) `await_approval` until somebody approved it: no site changes
   before that.
4. The current wave is closed: open the next one once its gates hold: the previous wave's bake time
   is over (`wake_at` until then), and with `require_approval` somebody approved it (`await_approval`
   until then).
5. The current wave is open:
   - more failed sites than the plan's failure threshold: `halt` (and `rollback` with auto_rollback),
     at once, before anything else: no other site of the wave starts, no later wave opens; the reason
     names the failed sites and why they failed;
   - started sites that have been at it for longer than `site_deadline_seconds`: `fail` those that
     were reached (the commit was pushed and the site answered: the release is not healthy there, and
     that counts against the threshold) and `skip` those that could not be reached (a skipped site is
     not a failure); the workflow cancels their runs. Nothing else is decided with them, so the next
     decision sees the new counts;
   - every site done: if every one of them was skipped (none reached), `halt` ("no site of wave k
     could be reached") unless the plan allows unreachable waves; otherwise `close_wave` (with
     `bake_until` unless it is the last wave) or, for the last wave, `succeed`;
   - otherwise `start` not-started sites, in planned order, up to `max_parallel` sites in flight; with
     `respect_windows`, a site outside its window is not started but moved to `waiting_window`
     (which holds no slot) and retried when its window opens (`wake_at`).
"""

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rollouts.choices import (
    SITE_DONE_STATES,
    SITE_IN_FLIGHT_STATES,
    SITE_NOT_STARTED_STATES,
    RolloutState,
    SiteRolloutState,
    SkipReason,
)
from rollouts.planning import describe_threshold, threshold_exceeded

# What fits in a rollout's halted_reason (500 characters) with the failed sites named.
REASON_LENGTH = 500


@dataclass(frozen=True)
class SiteView:
    code: str
    state: str
    window_open: bool = True
    next_window_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    # In flight only: its commit was pushed and the site answered since (it is judged, not skipped).
    reached: bool = False


@dataclass(frozen=True)
class WaveView:
    """One wave. `state_counts` counts the whole wave's sites per state; `sites` are the ones `decide`
    looks at one by one. With `state_counts` None, `sites` is the whole wave (and is counted). Otherwise
    `sites` must hold at least every in-flight site past its deadline, the other in-flight site that
    started first, and the not-started sites in planned order, as many as there are free slots (all the
    selector could check, with windows): the driver then reads a handful of rows per decision, not the
    whole wave."""

    index: int
    name: str
    sites: tuple[SiteView, ...]
    opened_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None
    bake_until: dt.datetime | None = None
    approved_at: dt.datetime | None = None
    state_counts: Mapping[str, int] | None = None
    # Skipped sites by SkipReason (None: not known; the halt reason then says less).
    skipped_counts: Mapping[str, int] | None = None
    # A few failed sites of the wave with their errors, for the halt reason: (code, error).
    failed_sites: tuple[tuple[str, str], ...] = ()

    def count(self, states: Iterable[str]) -> int:
        counts = self.state_counts if self.state_counts is not None else Counter(s.state for s in self.sites)
        return sum(counts.get(state, 0) for state in states)

    @property
    def size(self) -> int:
        return len(self.sites) if self.state_counts is None else sum(self.state_counts.values())


@dataclass(frozen=True)
class RolloutView:
    state: str
    current_wave: int
    waves: tuple[WaveView, ...]
    max_parallel: int = 1
    failure_threshold: dict[str, int] = field(default_factory=lambda: {"count": 0})
    bake_seconds: int = 0
    require_approval: bool = False
    approve_first_wave: bool = False
    respect_windows: bool = False
    auto_rollback: bool = False
    site_deadline_seconds: int = 6 * 3600
    rollback_requested: bool = False
    allow_unreachable_waves: bool = False


@dataclass(frozen=True)
class Decision:
    """The next step. Empty fields mean "nothing of that kind"; `reason` says why, for logs and the admin."""

    reason: str = ""
    start: tuple[str, ...] = ()
    wait_window: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    fail: tuple[str, ...] = ()
    open_wave: int | None = None
    close_wave: int | None = None
    bake_until: dt.datetime | None = None
    await_approval: bool = False
    halt: bool = False
    rollback: bool = False
    succeed: bool = False
    wake_at: dt.datetime | None = None

    @property
    def idle(self) -> bool:
        """Nothing to apply now: wait for a site event or `wake_at`."""
        return not (self.start or self.wait_window or self.skip or self.fail or self.changes_rollout)

    @property
    def changes_rollout(self) -> bool:
        """It changes the rollout or a wave, not only sites: another decision may follow at once."""
        return (
            self.open_wave is not None
            or self.close_wave is not None
            or self.await_approval
            or self.halt
            or self.rollback
            or self.succeed
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "start": list(self.start),
            "wait_window": list(self.wait_window),
            "skip": list(self.skip),
            "fail": list(self.fail),
            "open_wave": self.open_wave,
            "close_wave": self.close_wave,
            "bake_until": self.bake_until.isoformat() if self.bake_until else None,
            "await_approval": self.await_approval,
            "halt": self.halt,
            "rollback": self.rollback,
            "succeed": self.succeed,
            "wake_at": self.wake_at.isoformat() if self.wake_at else None,
        }


def decide(view: RolloutView, now: dt.datetime) -> Decision:
    """The next step of the rollout `view` at `now` (see the module docstring)."""
    if view.rollback_requested and view.state != RolloutState.ROLLED_BACK:
        return Decision(reason="a roll back was requested", rollback=True)
    if view.state != RolloutState.RUNNING:
        return Decision(reason=f"the rollout is {view.state}")
    if not view.waves:
        return Decision(reason="the rollout has no sites", succeed=True)
    wave = view.waves[view.current_wave]
    if wave.opened_at is None:
        if view.approve_first_wave and wave.approved_at is None:
            return Decision(reason=f"{_name(wave)} needs an approval before any site changes", await_approval=True)
        return Decision(reason=f"open {_name(wave)}", open_wave=wave.index)
    if wave.closed_at is not None:
        return _next_wave(view, wave, now)
    return _in_wave(view, wave, now)


def _next_wave(view: RolloutView, wave: WaveView, now: dt.datetime) -> Decision:
    if wave.index + 1 >= len(view.waves):
        return Decision(reason="the last wave is closed", succeed=True)
    following = view.waves[wave.index + 1]
    if wave.bake_until is not None and now < wave.bake_until:
        return Decision(reason=f"{_name(wave)} bakes until {wave.bake_until.isoformat()}", wake_at=wave.bake_until)
    if view.require_approval and following.approved_at is None:
        return Decision(reason=f"{_name(following)} needs an approval", await_approval=True)
    return Decision(reason=f"open {_name(following)}", open_wave=following.index)


def _in_wave(view: RolloutView, wave: WaveView, now: dt.datetime) -> Decision:
    failed = wave.count([SiteRolloutState.FAILED])
    if threshold_exceeded(view.failure_threshold, failed=failed, size=wave.size):
        head = (
            f"{_name(wave)}: {failed} of {wave.size} sites failed, more than the threshold of "
            f"{describe_threshold(view.failure_threshold)}"
        )
        return Decision(
            reason=head + _failures(wave, budget=REASON_LENGTH - len(head)), halt=True, rollback=view.auto_rollback
        )
    deadline = dt.timedelta(seconds=view.site_deadline_seconds)
    overdue = [
        s
        for s in wave.sites
        if s.state in SITE_IN_FLIGHT_STATES and s.started_at is not None and now - s.started_at > deadline
    ]
    if overdue:
        fail = tuple(s.code for s in overdue if s.reached)
        skip = tuple(s.code for s in overdue if not s.reached)
        parts = [f"fail {len(fail)} site(s) not healthy"] if fail else []
        parts += [f"skip {len(skip)} site(s) not reached"] if skip else []
        return Decision(
            reason=f"{_name(wave)}: {' and '.join(parts)} within the site deadline of {view.site_deadline_seconds} s",
            fail=fail,
            skip=skip,
        )
    unfinished = wave.size - wave.count(SITE_DONE_STATES)
    if unfinished <= 0:
        return _complete(view, wave, now)
    in_flight = wave.count(SITE_IN_FLIGHT_STATES)
    slots = max(view.max_parallel - in_flight, 0)
    start: list[str] = []
    wait: list[str] = []
    wake: list[dt.datetime] = []
    for site in wave.sites:
        if site.state in SITE_DONE_STATES:
            continue
        if site.state not in SITE_NOT_STARTED_STATES:
            if site.started_at is not None:
                wake.append(site.started_at + deadline)
            continue
        if view.respect_windows and not site.window_open:
            if site.state == SiteRolloutState.PENDING:
                wait.append(site.code)
            if site.next_window_at is not None:
                wake.append(site.next_window_at)
            continue
        if len(start) < slots:
            start.append(site.code)
    parts = []
    if start:
        parts.append(f"start {len(start)} site(s)")
    if wait:
        parts.append(f"{len(wait)} site(s) wait for their window")
    return Decision(
        reason=f"{_name(wave)}: " + (", ".join(parts) or f"{in_flight} site(s) in flight"),
        start=tuple(start),
        wait_window=tuple(wait),
        wake_at=min(wake) if wake else None,
    )


def _complete(view: RolloutView, wave: WaveView, now: dt.datetime) -> Decision:
    """Every site of the wave is done: it passes, unless none of its sites could be judged."""
    skipped = wave.count([SiteRolloutState.SKIPPED])
    if wave.size and skipped == wave.size and not view.allow_unreachable_waves:
        detail = ""
        if wave.skipped_counts is not None:
            shown = [
                f"{wave.skipped_counts.get(reason, 0)} {label.lower()}"
                for reason, label in SkipReason.choices
                if wave.skipped_counts.get(reason, 0)
            ]
            detail = f" ({', '.join(shown)})" if shown else ""
        return Decision(
            reason=f"no site of {_name(wave)} could be reached: all {wave.size} skipped{detail}",
            halt=True,
            rollback=view.auto_rollback,
        )
    last = wave.index + 1 >= len(view.waves)
    bake_until = now + dt.timedelta(seconds=view.bake_seconds) if view.bake_seconds and not last else None
    return Decision(
        reason=f"{_name(wave)} is complete" + (", the rollout succeeded" if last else ""),
        close_wave=wave.index,
        bake_until=bake_until,
        succeed=last,
    )


def _failures(wave: WaveView, *, budget: int) -> str:
    """`: CODE (error); CODE (error)` for the failed sites the view carries, within `budget` characters."""
    if not wave.failed_sites or budget < 40:
        return ""
    each = max((budget - 4) // len(wave.failed_sites) - 6, 30)
    parts = []
    for code, error in wave.failed_sites:
        text = " ".join(error.split()) or "no message"
        parts.append(f"{code} ({text[: each - len(code)].rstrip()}{'…' if len(text) > each - len(code) else ''})")
    text = ": " + "; ".join(parts)
    return text if len(text) <= budget else text[: budget - 1] + "…"


def _name(wave: WaveView) -> str:
    return f"wave {wave.index} ({wave.name})"
