"""The failure gate end to end: a real Celery worker on a real Redis, the simulator as the fleet (its
Deployment controller reports ProgressDeadlineExceeded as Kubernetes does), the sites' bare repositories
read with plain git. A release that breaks pods fails its sites and halts the rollout before the next
wave is committed; only sites that cannot be reached are skipped, and a wave of those halts too."""

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fleet.audit.models import AuditEvent
from rollouts import services
from rollouts.choices import RolloutState, SiteRolloutState, SkipReason
from rollouts.models import Release, Rollout, SiteRollout
from simulator.testing import Simulator
from tests.rollouts.conftest import POS_BRIDGE_TEMPLATES, commit_count, wait_sweeping
from tests.rollouts.test_workflow import release
from tests.support.services import Worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")
# The Deployment's own progress deadline, short: the simulator times its rollout out after it.
PROGRESS_DEADLINE = 15
SHORT_DEADLINE_TEMPLATES = {
    **POS_BRIDGE_TEMPLATES,
    "deployment.yaml": POS_BRIDGE_TEMPLATES["deployment.yaml"].replace(
        "spec:\n  replicas: 1\n", f"spec:\n  replicas: 1\n  progressDeadlineSeconds: {PROGRESS_DEADLINE}\n", 1
    ),
}


@pytest.fixture
def short_grace_worker(celery_worker: Worker) -> Iterator[Worker]:
    """The session's worker restarted with a 3-second pod grace (CrashLoopBackOff fails a site in seconds)."""
    with celery_worker.reconfigured(FLEET_ROLLOUT_POD_GRACE_SECONDS="3") as worker:
        yield worker


def start(rel: Release, **plan: Any) -> Rollout:
    fields: dict[str, Any] = {
        "name": f"plan-{rel.version}-{time.monotonic_ns()}",
        "release": rel,
        "target": {"all": True},
        "failure_threshold": {"count": 0},
        "respect_windows": False,
        **plan,
    }
    return services.rollout_start(
        plan=services.rollout_plan_create(actor="test", source="test", **fields), actor="test", source="test"
    )


def fresh(rollout: Rollout) -> Rollout:
    rollout.refresh_from_db()
    return rollout


def rows_of(rollout: Rollout, wave: int | None = None) -> dict[str, SiteRollout]:
    rows = SiteRollout.objects.filter(rollout=rollout).select_related("site", "wave")
    if wave is not None:
        rows = rows.filter(wave__index=wave)
    return {row.site.code: row for row in rows}


def test_a_release_that_breaks_pods_halts_in_wave_two_and_the_last_wave_gets_nothing(
    celery_worker: Worker, simulated_fleet: Callable[[int], Simulator]
) -> None:
    # Given 30 restaurants and a rollout in three waves (canary, 30 %, 100 %) that tolerates one failure
    # per wave, asks for approval between waves and gives each site 150 s
    sim = simulated_fleet(30)
    canary = sim.codes[0]
    rollout = start(
        release("2.0.0", SHORT_DEADLINE_TEMPLATES),
        waves=[{"name": "canary", "sites": [canary]}, {"name": "30%", "percent": 30}, {"name": "all", "percent": 100}],
        failure_threshold={"count": 1},
        require_approval=True,
        site_deadline_seconds=150,
        max_parallel=10,
    )
    second, last = rows_of(rollout, 1), rows_of(rollout, 2)
    assert (len(second), len(last)) == (8, 21)
    before = {code: commit_count(sim.repo_path(code)) for code in last}
    # and three sites of the second wave whose pods never become ready
    broken = sorted(second)[:3]
    for code in broken:
        sim.add_fault("unavailable_workloads", site=code)

    wait_sweeping(lambda: fresh(rollout).state == RolloutState.AWAITING_APPROVAL, 60, "the canary passing")
    services.rollout_approve(rollout=rollout, actor="test", source="test", reason="canary is fine")
    approved = time.monotonic()

    # When their Deployments time out, the rollout halts in wave 2, long before the site deadline
    wait_sweeping(lambda: fresh(rollout).state == RolloutState.HALTED, 120, "the rollout halting")
    assert time.monotonic() - approved < 150 - 30, "halted by the progress deadline, not the site deadline"
    wait_sweeping(
        lambda: all(rows_of(rollout)[code].state == SiteRolloutState.FAILED for code in broken),
        60,
        "the three broken sites failed",
    )

    # Then nothing was committed at the last wave's 21 sites (plain git), and they are skipped as not started
    assert {code: commit_count(sim.repo_path(code)) for code in last} == before
    rows = rows_of(rollout)
    assert {rows[code].state for code in last} == {SiteRolloutState.SKIPPED}
    assert {rows[code].skip_reason for code in last} == {SkipReason.NOT_STARTED}
    # and each broken site failed with the workload's own reason, in a sentence naming it
    for code in broken:
        error = rows[code].error
        assert "Deployment pos/pos-bridge reports ProgressDeadlineExceeded since " in error, error
        assert "has timed out progressing" in error
    assert {rows[code].state for code in second if code not in broken} == {SiteRolloutState.SUCCEEDED}
    rollout = fresh(rollout)
    assert rollout.current_wave == 1
    # (two failures pass the threshold; the third may have failed in the same moment)
    assert re.search(
        r"wave 1 \(30%\): [23] of 8 sites failed, more than the threshold of 1 site\(s\): ", rollout.halted_reason
    )
    named = [code for code in broken if f"{code} (Deployment pos/pos-bridge reports ProgressDeadlineExceeded" in
             rollout.halted_reason]  # fmt: skip
    assert len(named) >= 2, rollout.halted_reason
    # The counters, the API's figures, say which is which
    assert (rollout.n_failed, rollout.n_skipped, rollout.n_skipped_not_started) == (3, 21, 21)
    assert rollout.skipped_counts == {"unreachable": 0, "not_started": 21, "cancelled": 0, "by_person": 0}
    wave = rollout.waves.get(index=1)
    assert (wave.n_failed, wave.n_succeeded, wave.n_skipped) == (3, 5, 0)
    failed_audit = AuditEvent.objects.filter(verb="site_failed", object_id=str(rollout.pk))
    assert {event.payload["site"] for event in failed_audit} == set(broken)
    assert all(event.payload["counts_against_threshold"] for event in failed_audit)

    # kubectl, pointed at a broken site, says the same as the rollout does
    status = subprocess.run(
        [KUBECTL, "--kubeconfig", str(sim.kubeconfig_path(broken[0])), "rollout", "status",
         "deployment/pos-bridge", "-n", "pos", "--timeout=30s"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert status.returncode != 0
    assert 'deployment "pos-bridge" exceeded its progress deadline' in status.stderr


def test_a_wave_of_only_unreachable_sites_halts_and_the_next_wave_gets_nothing(
    celery_worker: Worker, simulated_fleet: Callable[[int], Simulator]
) -> None:
    # Given a canary wave of two sites that are offline (their repositories take the push; nobody applies it)
    sim = simulated_fleet(4)
    canaries, later = sim.codes[:2], sim.codes[2:]
    for code in canaries:
        sim.add_fault("offline", site=code)
    before = {code: commit_count(sim.repo_path(code)) for code in later}

    rollout = start(
        release("1.0.0"),
        waves=[{"name": "canary", "sites": canaries}, {"percent": 100}],
        failure_threshold={"count": 0},
        site_deadline_seconds=12,
    )

    # While they do not answer they wait as unreachable, counted apart from syncing, with the reason
    wait_sweeping(lambda: fresh(rollout).n_unreachable == 2, 30, "both canaries waiting as unreachable")
    waiting = rows_of(fresh(rollout))
    assert {waiting[code].state for code in canaries} == {SiteRolloutState.UNREACHABLE}
    assert all(waiting[code].unreachable_since is not None for code in canaries)
    assert all("cannot reach the cluster at" in waiting[code].error for code in canaries)
    assert fresh(rollout).n_syncing == 0 and fresh(rollout).n_succeeded == 0

    # When their deadline passes, they are skipped as unreachable: no failure, but no pass either
    wait_sweeping(lambda: fresh(rollout).state == RolloutState.HALTED, 60, "the rollout halting")
    rollout = fresh(rollout)
    assert (
        rollout.halted_reason == "no site of wave 0 (canary) could be reached: all 2 skipped (2 could not be reached)"
    )
    rows = rows_of(rollout)
    assert {rows[code].skip_reason for code in canaries} == {SkipReason.UNREACHABLE}
    assert all("could not be reached within the site deadline of 12 s" in rows[code].error for code in canaries)
    assert all("waiting: unreachable since" in rows[code].error for code in canaries)
    assert (rollout.n_failed, rollout.n_skipped_unreachable, rollout.n_unreachable) == (0, 2, 0)
    assert {code: commit_count(sim.repo_path(code)) for code in later} == before
    assert {rows[code].skip_reason for code in later} == {SkipReason.NOT_STARTED}
    skipped = AuditEvent.objects.filter(verb="site_skipped", object_id=str(rollout.pk), payload__site=canaries[0])
    assert skipped.get().payload["skip_reason"] == "unreachable"


def test_min_success_seconds_holds_a_site_that_goes_unhealthy_right_after_becoming_available(
    short_grace_worker: Worker, simulated_fleet: Callable[[int], Simulator]
) -> None:
    # Given a site rollout that counts a site as succeeded only after 20 s of good health
    sim = simulated_fleet(1)
    code = sim.codes[0]
    rollout = start(release("1.0.0"), waves=[{"percent": 100}], min_success_seconds=20)

    def holding() -> bool:
        run = rows_of(rollout)[code].workflow_run
        steps = run.steps.filter(step="converge") if run is not None else None
        return bool(steps and steps.filter(message__contains="counts as succeeded after 20 s").exists())

    # When its Deployment became available (a site without the hold would have succeeded there and then)
    wait_sweeping(holding, 40, "the site available and held")
    assert rows_of(rollout)[code].state == SiteRolloutState.VERIFYING
    # and its pods start crash-looping right after
    sim.add_fault("crashloop_workloads", site=code)

    # Then the site never counts as succeeded: it fails on the crash loop
    done = {SiteRolloutState.SUCCEEDED, SiteRolloutState.FAILED, SiteRolloutState.SKIPPED}
    wait_sweeping(lambda: rows_of(rollout)[code].state in done, 60, "the site's verdict")
    row = rows_of(rollout)[code]
    assert row.state == SiteRolloutState.FAILED, row.error
    assert "of Deployment pos/pos-bridge is in CrashLoopBackOff since " in row.error
    assert row.finished_at is not None and row.started_at is not None
    wait_sweeping(lambda: fresh(rollout).state == RolloutState.HALTED, 30, "the rollout halting")
