"""rollouts.progress.decide: every decision the rollout workflow will act on."""

import datetime as dt

import pytest

from rollouts.progress import Decision, RolloutView, SiteView, WaveView, decide

NOW = dt.datetime(2025, 3, 3, 12, 0, tzinfo=dt.UTC)
EARLIER = NOW - dt.timedelta(minutes=5)


def sites(*states: str, prefix: str = "S") -> tuple[SiteView, ...]:
    return tuple(SiteView(code=f"{prefix}{i}", state=state, started_at=None) for i, state in enumerate(states))


def view(*waves: WaveView, state: str = "running", current: int = 0, **options: object) -> RolloutView:
    return RolloutView(state=state, current_wave=current, waves=waves, **options)  # type: ignore[arg-type]


def wave(index: int, site_views: tuple[SiteView, ...], **fields: object) -> WaveView:
    defaults: dict[str, object] = {"opened_at": EARLIER}
    defaults.update(fields)
    return WaveView(index=index, name=f"w{index}", sites=site_views, **defaults)  # type: ignore[arg-type]


def test_a_new_rollout_opens_its_first_wave() -> None:
    decision = decide(view(wave(0, sites("pending"), opened_at=None)), NOW)
    assert decision.open_wave == 0
    assert not decision.idle


def test_under_the_approval_policy_the_first_wave_waits_for_an_approval() -> None:
    unapproved = wave(0, sites("pending", "pending"), opened_at=None)

    awaiting = decide(view(unapproved, approve_first_wave=True), NOW)
    assert awaiting.await_approval and awaiting.open_wave is None and not awaiting.start
    assert "needs an approval before any site changes" in awaiting.reason

    approved = wave(0, sites("pending", "pending"), opened_at=None, approved_at=NOW)
    assert decide(view(approved, approve_first_wave=True), NOW).open_wave == 0


@pytest.mark.parametrize("state", ["paused", "awaiting_approval", "halted", "succeeded", "cancelled", "scheduled"])
def test_a_rollout_that_is_not_running_does_nothing(state: str) -> None:
    decision = decide(view(wave(0, sites("pending", "pending")), state=state), NOW)
    assert decision.idle
    assert state in decision.reason


def test_a_requested_rollback_wins_over_everything() -> None:
    for state in ("running", "paused", "halted", "succeeded", "cancelled"):
        assert decide(view(wave(0, sites("pending")), state=state, rollback_requested=True), NOW).rollback


def test_starts_pending_sites_in_order_up_to_max_parallel() -> None:
    decision = decide(view(wave(0, sites("pending", "pending", "pending", "pending")), max_parallel=3), NOW)
    assert decision.start == ("S0", "S1", "S2")


def test_sites_in_flight_take_slots_and_waiting_ones_do_not() -> None:
    w = wave(0, sites("committing", "syncing", "waiting_window", "succeeded", "pending", "pending"))
    decision = decide(view(w, max_parallel=3), NOW)
    assert decision.start == ("S2",)  # window open again (respect_windows off): it goes first, one slot left

    full = wave(0, sites("committing", "syncing", "verifying", "pending"))
    assert decide(view(full, max_parallel=3), NOW).start == ()
    assert decide(view(full, max_parallel=3), NOW).idle


def test_respect_windows_moves_closed_sites_to_waiting_and_wakes_at_the_first_window() -> None:
    later, sooner = NOW + dt.timedelta(hours=5), NOW + dt.timedelta(hours=2)
    w = wave(
        0,
        (
            SiteView("A", "pending", window_open=False, next_window_at=later),
            SiteView("B", "waiting_window", window_open=False, next_window_at=sooner),
            SiteView("C", "pending", window_open=True),
            SiteView("D", "waiting_window", window_open=True),
        ),
    )
    decision = decide(view(w, max_parallel=10, respect_windows=True), NOW)
    assert decision.start == ("C", "D")
    assert decision.wait_window == ("A",)  # B is already waiting
    assert decision.wake_at == sooner

    ignored = decide(view(w, max_parallel=10, respect_windows=False), NOW)
    assert ignored.start == ("A", "B", "C", "D")


def test_failures_over_the_threshold_halt_at_once_and_roll_back_when_asked() -> None:
    w = wave(0, sites("failed", "failed", "committing", "pending", "succeeded"))
    decision = decide(view(w, failure_threshold={"count": 1}, auto_rollback=True), NOW)
    assert decision.halt and decision.rollback
    assert "2 of 5 sites failed" in decision.reason
    assert decision.start == ()

    no_rollback = decide(view(w, failure_threshold={"percent": 20}), NOW)
    assert no_rollback.halt and not no_rollback.rollback

    tolerated = decide(view(w, failure_threshold={"percent": 40}, max_parallel=5), NOW)
    assert not tolerated.halt
    assert tolerated.start == ("S3",)


def test_a_complete_wave_is_closed_with_its_bake_time() -> None:
    w0 = wave(0, sites("succeeded", "failed", "skipped"))
    w1 = wave(1, sites("pending", prefix="T"), opened_at=None)
    decision = decide(view(w0, w1, failure_threshold={"count": 1}, bake_seconds=600), NOW)
    assert decision.close_wave == 0
    assert decision.bake_until == NOW + dt.timedelta(seconds=600)
    assert not decision.succeed


def test_the_last_wave_complete_means_success() -> None:
    decision = decide(view(wave(0, sites("succeeded", "succeeded")), bake_seconds=600), NOW)
    assert decision.close_wave == 0 and decision.succeed
    assert decision.bake_until is None


def test_next_wave_waits_for_the_bake_then_the_approval_then_opens() -> None:
    bake_end = NOW + dt.timedelta(minutes=10)
    w0 = wave(0, sites("succeeded"), closed_at=EARLIER, bake_until=bake_end)
    w1 = wave(1, sites("pending", prefix="T"), opened_at=None)

    baking = decide(view(w0, w1, require_approval=True), NOW)
    assert baking.idle and baking.wake_at == bake_end

    after = bake_end + dt.timedelta(seconds=1)
    awaiting = decide(view(w0, w1, require_approval=True), after)
    assert awaiting.await_approval and awaiting.open_wave is None

    approved = wave(1, sites("pending", prefix="T"), opened_at=None, approved_at=after)
    assert decide(view(w0, approved, require_approval=True), after).open_wave == 1
    assert decide(view(w0, w1, require_approval=False), after).open_wave == 1


def test_a_closed_last_wave_is_success() -> None:
    assert decide(view(wave(0, sites("succeeded"), closed_at=EARLIER)), NOW).succeed


def test_sites_past_their_deadline_fail_when_reached_and_are_skipped_when_not() -> None:
    # Given a wave with two sites past the deadline of an hour: one answered after its push, one never did
    late = NOW - dt.timedelta(hours=2)
    unhealthy = SiteView("A", "verifying", started_at=late, reached=True)
    silent = SiteView("B", "syncing", started_at=late, reached=False)
    fresh = SiteView("C", "syncing", started_at=NOW - dt.timedelta(minutes=1))
    w = wave(0, (unhealthy, silent, fresh, *sites("pending")))

    decision = decide(view(w, site_deadline_seconds=3600, max_parallel=3, failure_threshold={"count": 5}), NOW)

    # Then the reached one fails (it counts against the threshold), the other is skipped, and nothing else
    # is decided with them: the next decision sees the new counts before it starts or closes anything.
    assert decision.fail == ("A",) and decision.skip == ("B",)
    assert decision.start == () and decision.close_wave is None and not decision.idle
    assert "fail 1 site(s) not healthy and skip 1 site(s) not reached" in decision.reason

    after = wave(0, (fresh, *sites("pending")), state_counts={"failed": 1, "skipped": 1, "syncing": 1, "pending": 1})
    next_decision = decide(view(after, site_deadline_seconds=3600, max_parallel=3, failure_threshold={"count": 5}), NOW)
    assert next_decision.start == ("S0",)
    assert next_decision.wake_at == fresh.started_at + dt.timedelta(hours=1)  # type: ignore[operator]


def test_a_site_failed_at_its_deadline_can_halt_the_wave_before_it_closes() -> None:
    late = SiteView("A", "verifying", started_at=NOW - dt.timedelta(hours=2), reached=True)
    first = decide(view(wave(0, (late, *sites("succeeded"))), site_deadline_seconds=3600), NOW)
    assert first.fail == ("A",) and first.close_wave is None and not first.succeed
    # once recorded, the threshold (0 failures tolerated) halts the rollout instead of closing the wave
    then = decide(view(wave(0, sites("failed", "succeeded"))), NOW)
    assert then.halt and then.close_wave is None


def test_a_wave_whose_every_site_was_skipped_halts_unless_the_plan_allows_it() -> None:
    w0 = wave(0, (), state_counts={"skipped": 3}, skipped_counts={"unreachable": 2, "not_started": 1, "cancelled": 0})
    w1 = wave(1, sites("pending", prefix="T"), opened_at=None)
    decision = decide(view(w0, w1, auto_rollback=True), NOW)
    assert decision.halt and decision.rollback and decision.close_wave is None
    assert decision.reason == (
        "no site of wave 0 (w0) could be reached: all 3 skipped (2 could not be reached, 1 never started)"
    )
    allowed = decide(view(w0, w1, allow_unreachable_waves=True), NOW)
    assert allowed.close_wave == 0 and not allowed.halt
    # one success among the skipped sites is a pass
    mixed = wave(0, (), state_counts={"skipped": 2, "succeeded": 1})
    assert decide(view(mixed, w1), NOW).close_wave == 0


def test_the_halt_reason_names_the_failed_sites_and_why() -> None:
    errors = (
        ("TX-0001", "Deployment pos/pos-bridge reports ProgressDeadlineExceeded since 14:02:11 UTC: timed out"),
        ("TX-0002", "pod pos/pos-bridge-x of Deployment pos/pos-bridge is in CrashLoopBackOff since 14:03:00 UTC " * 5),
    )
    w = wave(0, (), state_counts={"failed": 2, "succeeded": 3, "pending": 3}, failed_sites=errors)
    decision = decide(view(w, failure_threshold={"count": 1}), NOW)
    assert decision.halt
    assert decision.reason.startswith("wave 0 (w0): 2 of 8 sites failed, more than the threshold of 1 site(s): ")
    assert "TX-0001 (Deployment pos/pos-bridge reports ProgressDeadlineExceeded" in decision.reason
    assert "TX-0002 (pod pos/pos-bridge-x" in decision.reason
    assert len(decision.reason) <= 500


def test_a_wave_known_by_its_counters_decides_as_the_whole_wave_would() -> None:
    # Given a wave of 1000 sites: 900 done, 2 failed, 60 in flight, 38 not started, with max_parallel 64
    done = sites(*["succeeded"] * 898, *["failed"] * 2)
    flying = tuple(SiteView(f"F{i}", "syncing", started_at=EARLIER + dt.timedelta(seconds=i)) for i in range(60))
    waiting = sites(*["pending"] * 38, prefix="P")
    whole = wave(0, (*done, *flying, *waiting))
    options = {"max_parallel": 64, "failure_threshold": {"count": 2}}
    # When the selector hands over only the counters, the oldest in-flight site and a free slot's worth
    counts = {"succeeded": 898, "failed": 2, "syncing": 60, "pending": 38}
    partial = wave(0, (flying[0], *waiting[:4]), state_counts=counts)
    # Then the decision is the same as over the whole wave
    assert decide(view(partial, **options), NOW) == decide(view(whole, **options), NOW)
    assert decide(view(partial, **options), NOW).start == ("P0", "P1", "P2", "P3")
    # and the counters alone close a wave, halt on failures and report its size
    assert decide(view(wave(0, (), state_counts={"succeeded": 5, "skipped": 1})), NOW).close_wave == 0
    halted = decide(view(wave(0, (), state_counts={"failed": 3, "pending": 97})), NOW)
    assert halted.halt and "3 of 100 sites failed" in halted.reason


def test_a_rollout_without_waves_succeeds() -> None:
    assert decide(view(), NOW).succeed


def test_decision_as_dict_is_json_ready() -> None:
    d = Decision(reason="x", start=("A",), wake_at=NOW).as_dict()
    assert d["start"] == ["A"] and d["wake_at"] == NOW.isoformat()
