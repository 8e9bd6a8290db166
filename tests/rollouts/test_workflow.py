"""Rollouts driven end to end: a real Celery worker on a real Redis, the simulator over HTTP as the
fleet (its GitOps agents apply what we push), and the sites' bare repositories checked with plain git."""

import datetime as dt
import time
import zoneinfo
from collections.abc import Callable
from typing import Any

import pytest

from fleet.workflows.choices import RunState
from fleet.workflows.models import WorkflowRun
from rollouts import services
from rollouts.choices import DRIVE_KIND, ROLLBACK_KIND, SITE_KIND, RolloutState, SiteRolloutState
from rollouts.models import Application, Release, Rollout, SiteRollout
from rollouts.rendering import render_site_files
from simulator.testing import Simulator
from sites.models import Site
from sites.repos import Author, SiteRepo
from tests.rollouts.conftest import (
    POS_BRIDGE_TEMPLATES,
    commit_count,
    commit_counts,
    driver_decides_again,
    git_show,
    rollout_state,
    wait_sweeping,
    wave_codes,
)
from tests.support.services import Worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CONFIGMAP = "apps/pos-bridge/configmap.yaml"
IN_FLIGHT = ["committing", "syncing", "verifying"]


def release(version: str, templates: dict[str, str] = POS_BRIDGE_TEMPLATES) -> Release:
    """A release of pos-bridge (the application created at the first call) with `templates`."""
    application = Application.objects.filter(name="pos-bridge").first() or services.application_create(
        actor="test", source="test", name="pos-bridge", team="payments", namespace="pos"
    )
    return services.release_create(
        actor="test", source="test", application=application, version=version, templates=templates
    )


def start(rel: Release, **plan: Any) -> Rollout:
    fields: dict[str, Any] = {
        "name": f"plan-{rel.version}-{time.monotonic_ns()}",
        "release": rel,
        "target": {"all": True},
        "waves": [{"name": "canary", "percent": 10}, {"name": "early", "percent": 50}, {"name": "all", "percent": 100}],
        "max_parallel": 4,
        "failure_threshold": {"count": 0},
        "respect_windows": False,
    }
    fields.update(plan)
    return services.rollout_start(
        plan=services.rollout_plan_create(actor="test", source="test", **fields), actor="test", source="test"
    )


def new_commits(sim: Simulator, before: dict[str, int], codes: list[str]) -> dict[str, int]:
    return {code: commit_count(sim.repo_path(code)) - before[code] for code in codes}


def assert_converged(sim: Simulator, rollout: Rollout, before: dict[str, int]) -> None:
    assert rollout_state(rollout) == RolloutState.SUCCEEDED
    rows = list(SiteRollout.objects.filter(rollout=rollout).select_related("site"))
    assert {row.state for row in rows} == {SiteRolloutState.SUCCEEDED}
    assert rollout.n_succeeded == len(rows) == len(sim.codes)
    assert new_commits(sim, before, sim.codes) == dict.fromkeys(sim.codes, 1)  # exactly one commit per site
    for row in rows:
        head = git_show(sim.repo_path(row.site.code), "main").split()[1]  # type: ignore[union-attr]
        assert row.revision == head
        assert f'site: "{row.site.code}"' in (git_show(sim.repo_path(row.site.code), f"main:{CONFIGMAP}") or "")


def test_a_three_wave_rollout_converges_with_one_commit_per_site(
    celery_worker: Worker, simulated_fleet: Callable[[int], Simulator]
) -> None:
    sim = simulated_fleet(12)
    before = commit_counts(sim)

    rollout = start(release("1.0.0"))
    wait_sweeping(lambda: rollout_state(rollout) == RolloutState.SUCCEEDED, 60, "the rollout succeeding")

    assert_converged(sim, rollout, before)
    assert [w.n_succeeded for w in rollout.waves.order_by("index")] == [w.size for w in rollout.waves.order_by("index")]
    assert rollout.waves.count() == 3
    driver = WorkflowRun.objects.get(kind=DRIVE_KIND, subject_id=str(rollout.pk))
    assert driver.state == RunState.SUCCEEDED
    assert Site.objects.get(code=sim.codes[0]).rollouts.get().workflow_run.kind == SITE_KIND  # type: ignore[union-attr]

    # A roll back asked for afterwards reverts every site; their repositories were empty before, so the
    # application's folder goes away, in one more commit per site.
    services.rollout_rollback(rollout=rollout, actor="test", source="test", reason="changed our minds")
    wait_sweeping(lambda: rollout_state(rollout) == RolloutState.ROLLED_BACK, 40, "the roll back finishing")
    assert new_commits(sim, before, sim.codes) == dict.fromkeys(sim.codes, 2)
    assert {code: git_show(sim.repo_path(code), f"main:{CONFIGMAP}") for code in sim.codes} == dict.fromkeys(sim.codes)
    assert set(SiteRollout.objects.filter(rollout=rollout).values_list("state", flat=True)) == {"rolled_back"}


def test_a_failing_canary_wave_halts_and_rolls_back_and_later_waves_get_nothing(
    celery_worker: Worker, simulated_fleet: Callable[[int], Simulator]
) -> None:
    sim = simulated_fleet(8)
    # Given every site at release 1.0.0, written the way a previous rollout would have.
    v1 = release("1.0.0")
    for site in Site.objects.all():
        files = render_site_files(v1, site)
        SiteRepo.for_site(site).write(files, owned_prefix="apps/pos-bridge", message="v1", author=Author.of("test"))
    before = commit_counts(sim)
    v1_content = {code: git_show(sim.repo_path(code), f"main:{CONFIGMAP}") for code in sim.codes}
    canaries = sim.codes[:2]
    for code in canaries:
        sim.add_fault("sync_failure", site=code)

    # When 2.0.0 goes out with its canary wave on the failing sites and automatic roll back.
    rollout = start(
        release("2.0.0"),
        waves=[{"name": "canary", "sites": canaries}, {"percent": 50}, {"percent": 100}],
        auto_rollback=True,
    )
    wait_sweeping(lambda: Rollout.objects.get(pk=rollout.pk).halted_reason != "", 40, "the rollout halting")
    sim.clear_faults()  # the edge recovers, so the reverts can be applied
    wait_sweeping(lambda: rollout_state(rollout) == RolloutState.ROLLED_BACK, 40, "the roll back finishing")

    # Then the canaries are back at 1.0.0 (as a new commit), and no later-wave site got anything.
    later = [code for code in sim.codes if code not in canaries]
    assert new_commits(sim, before, later) == dict.fromkeys(later, 0)
    for code in canaries:
        assert git_show(sim.repo_path(code), f"main:{CONFIGMAP}") == v1_content[code]
        assert commit_count(sim.repo_path(code)) - before[code] in (1, 2)  # the release (if pushed), the revert
    assert "failed, more than the threshold" in rollout.halted_reason
    rows = SiteRollout.objects.filter(rollout=rollout).select_related("site")
    assert {r.site.code: r.state for r in rows if r.site.code in canaries} == dict.fromkeys(
        canaries, SiteRolloutState.ROLLED_BACK
    )
    assert {r.state for r in rows if r.site.code in later} == {SiteRolloutState.SKIPPED}
    # The first canary to fail halts the wave; the other may still have been syncing then, so only the
    # failed one(s) carry the edge's message.
    errors = [r.error for r in rows if r.site.code in canaries]
    assert any("simulated sync failure" in error for error in errors), errors
    assert WorkflowRun.objects.filter(kind=ROLLBACK_KIND, state=RunState.SUCCEEDED).count() == 2


def test_a_halted_rollout_without_auto_rollback_stays_halted(
    celery_worker: Worker, simulated_fleet: Callable[[int], Simulator]
) -> None:
    sim = simulated_fleet(6)
    before = commit_counts(sim)
    sim.add_fault("sync_failure", site=sim.codes[0])

    rollout = start(release("1.0.0"), waves=[{"sites": [sim.codes[0]]}, {"percent": 50}, {"percent": 100}])
    wait_sweeping(lambda: rollout_state(rollout) == RolloutState.HALTED, 40, "the rollout halting")
    driver_decides_again(rollout, "halted")

    assert rollout_state(rollout) == RolloutState.HALTED
    assert new_commits(sim, before, sim.codes[1:]) == dict.fromkeys(sim.codes[1:], 0)
    assert SiteRollout.objects.get(rollout=rollout, site__code=sim.codes[0]).state == SiteRolloutState.FAILED


def test_the_approval_gate_and_a_pause_hold_later_waves(
    celery_worker: Worker, simulated_fleet: Callable[[int], Simulator]
) -> None:
    sim = simulated_fleet(8)
    before = commit_counts(sim)

    rollout = start(release("1.0.0"), require_approval=True, max_parallel=1)
    wait_sweeping(lambda: rollout_state(rollout) == RolloutState.AWAITING_APPROVAL, 40, "the first gate")
    driver_decides_again(rollout, "at the first gate")
    later = wave_codes(rollout, 1) + wave_codes(rollout, 2)
    assert new_commits(sim, before, later) == dict.fromkeys(later, 0)

    services.rollout_approve(rollout=rollout, actor="test", source="test")
    wait_sweeping(
        lambda: SiteRollout.objects.filter(rollout=rollout, wave__index=1).exclude(state="pending").exists(),
        20,
        "the second wave starting",
    )
    services.rollout_pause(rollout=rollout, actor="test", source="test")
    wait_sweeping(
        lambda: (
            not SiteRollout.objects.filter(rollout=rollout, state__in=["committing", "syncing", "verifying"]).exists()
        ),
        20,
        "the sites in flight finishing",
    )
    held = commit_counts(sim)
    driver_decides_again(rollout, "paused")
    assert commit_counts(sim) == held  # paused: nothing new starts
    assert rollout_state(rollout) == RolloutState.PAUSED
    assert SiteRollout.objects.filter(rollout=rollout, wave__index=1, state="pending").exists()

    services.rollout_resume(rollout=rollout, actor="test", source="test")
    wait_sweeping(lambda: rollout_state(rollout) == RolloutState.AWAITING_APPROVAL, 40, "the second gate")
    assert new_commits(sim, before, wave_codes(rollout, 2)) == dict.fromkeys(wave_codes(rollout, 2), 0)
    services.rollout_approve(rollout=rollout, actor="test", source="test")
    wait_sweeping(lambda: rollout_state(rollout) == RolloutState.SUCCEEDED, 40, "the rollout succeeding")
    assert_converged(sim, rollout, before)


def test_a_site_outside_its_window_waits_and_proceeds_when_it_opens(
    celery_worker: Worker, simulated_fleet: Callable[[int], Simulator]
) -> None:
    sim = simulated_fleet(3)
    before = commit_counts(sim)
    late = Site.objects.get(code=sim.codes[0])
    local = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=8)).astimezone(zoneinfo.ZoneInfo(late.timezone))
    opens = local.strftime("%H:%M:%S")
    closes = (local + dt.timedelta(hours=1)).strftime("%H:%M:%S")
    Site.objects.filter(pk=late.pk).update(maintenance_windows=[{"start": opens, "end": closes}])

    rollout = start(release("1.0.0"), waves=[{"percent": 100}], respect_windows=True)
    wait_sweeping(
        lambda: SiteRollout.objects.get(rollout=rollout, site=late).state == SiteRolloutState.WAITING_WINDOW,
        10,
        "the site waiting for its window",
    )
    assert commit_count(sim.repo_path(late.code)) == before[late.code]

    wait_sweeping(
        lambda: rollout_state(rollout) == RolloutState.SUCCEEDED, 40, "the rollout succeeding once the window opened"
    )
    row = SiteRollout.objects.get(rollout=rollout, site=late)
    assert row.started_at is not None
    assert row.started_at >= dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=1)
    assert_converged(sim, rollout, before)


def test_killing_the_worker_mid_wave_loses_no_site_and_commits_none_twice(
    short_lease_worker: Worker, simulated_fleet: Callable[[int], Simulator], settings: Any
) -> None:
    # The sweeps this test makes (as beat would) re-send a wake-up lost with the worker after 3 s.
    settings.FLEET_WORKFLOW_REDELIVER_SECONDS = 3
    sim = simulated_fleet(12)
    before = commit_counts(sim)

    rollout = start(release("1.0.0"), waves=[{"percent": 25}, {"percent": 100}])
    wait_sweeping(
        lambda: SiteRollout.objects.filter(rollout=rollout, wave__index=1).exclude(state="pending").count() >= 2,
        40,
        "the second wave in flight",
    )
    short_lease_worker.stop(kill=True)
    short_lease_worker.start()
    killed = time.monotonic()
    wait_sweeping(
        lambda: rollout_state(rollout) == RolloutState.SUCCEEDED, 60, "the rollout succeeding after the crash"
    )
    assert time.monotonic() - killed < 40  # leases of 13 s, then a sweep

    assert_converged(sim, rollout, before)


def test_a_reached_site_past_its_deadline_fails_and_counts_against_the_threshold(
    celery_worker: Worker, simulated_fleet: Callable[[int], Simulator]
) -> None:
    sim = simulated_fleet(3)
    stuck = sim.codes[0]
    sim.add_fault("unavailable_workloads", site=stuck)  # its Deployment never becomes available

    # A deadline far shorter than the Deployment's own progress deadline (600 s): the site deadline decides.
    # Long enough for the edge to apply the commit on a loaded machine (not reached would be skipped).
    rollout = start(
        release("1.0.0"), waves=[{"percent": 100}], site_deadline_seconds=12, failure_threshold={"count": 1}
    )
    wait_sweeping(
        lambda: rollout_state(rollout) == RolloutState.SUCCEEDED, 90, "the rollout finishing without the stuck site"
    )

    rows = {row.site.code: row for row in SiteRollout.objects.filter(rollout=rollout).select_related("site")}
    # It was reached (the edge applied the commit): the release is not healthy there, so it failed.
    assert rows[stuck].state == SiteRolloutState.FAILED
    assert "not healthy within the site deadline of 12 s" in rows[stuck].error
    assert "not available yet: Deployment pos/pos-bridge: 0 of 1 replica(s) available" in rows[stuck].error
    assert {rows[code].state for code in sim.codes[1:]} == {SiteRolloutState.SUCCEEDED}
    assert (Rollout.objects.get(pk=rollout.pk).n_failed, Rollout.objects.get(pk=rollout.pk).n_skipped) == (1, 0)
    run = rows[stuck].workflow_run
    assert run is not None
    # The driver asks the run to stop and goes on; a run caught in its step stops at its next wake-up.
    wait_sweeping(lambda: WorkflowRun.objects.get(pk=run.pk).state == RunState.CANCELLED, 10, "the stuck run cancelled")
    steps = run.steps.filter(step="converge").values_list("message", flat=True)
    assert any("not available yet" in message for message in steps)


def test_cancel_skips_the_sites_not_started_and_stops_the_waiting_ones(
    celery_worker: Worker, simulated_fleet: Callable[[int], Simulator]
) -> None:
    sim = simulated_fleet(4)
    before = commit_counts(sim)
    for code in sim.codes:
        sim.add_fault("unavailable_workloads", site=code)

    rollout = start(release("1.0.0"), waves=[{"percent": 100}], max_parallel=1)
    wait_sweeping(
        lambda: SiteRollout.objects.filter(rollout=rollout, state=SiteRolloutState.VERIFYING).exists(),
        20,
        "the first site waiting in verify",
    )
    services.rollout_cancel(rollout=rollout, actor="test", source="test", reason="wrong release")
    driver = WorkflowRun.objects.get(kind=DRIVE_KIND, subject_id=str(rollout.pk))
    wait_sweeping(lambda: WorkflowRun.objects.get(pk=driver.pk).state == RunState.SUCCEEDED, 20, "the driver finishing")

    assert rollout_state(rollout) == RolloutState.CANCELLED
    assert set(SiteRollout.objects.filter(rollout=rollout).values_list("state", flat=True)) == {"skipped"}
    # The one that had started was stopped by the cancel; the others never started. Neither counts as failed.
    reasons = sorted(SiteRollout.objects.filter(rollout=rollout).values_list("skip_reason", flat=True))
    assert reasons == ["cancelled", "not_started", "not_started", "not_started"]
    assert not WorkflowRun.objects.filter(kind=SITE_KIND, state__in=["pending", "running", "waiting"]).exists()
    assert sum(new_commits(sim, before, sim.codes).values()) == 1  # only the site that had started
