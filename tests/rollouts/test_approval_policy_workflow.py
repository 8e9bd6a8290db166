"""The approval policy end to end: a real Celery worker drives the rollout against the simulator, and the
sites' bare repositories, read with plain git, show that nothing is committed before each approval."""

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from rollouts import services
from rollouts.choices import RolloutState, SiteRolloutState
from rollouts.models import Application, Rollout, SiteRollout
from simulator.testing import Simulator
from tests.factories import UserFactory
from tests.rollouts.conftest import (
    POS_BRIDGE_TEMPLATES,
    VIEW,
    commit_counts,
    driver_decides_again,
    rollout_state,
    wait_sweeping,
    wave_codes,
)
from tests.support.services import Worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def approve(user: Any, rollout: Rollout) -> Any:
    client = APIClient()
    client.force_authenticate(user)
    return client.post(f"/api/v1/rollouts/{rollout.pk}/approve/", {"reason": "reviewed"}, format="json")


def test_with_the_policy_every_wave_waits_for_another_persons_approval(
    celery_worker: Worker, simulated_fleet: Callable[[int], Simulator], settings: Any
) -> None:
    settings.FLEET_ROLLOUT_APPROVAL_POLICY = True  # fixed in the rollout's snapshot at start
    sim = simulated_fleet(6)
    before = commit_counts(sim)
    author = UserFactory(username="author", perms=[*VIEW, "rollouts.approve_rollout"])
    planner = UserFactory(username="planner", perms=[*VIEW, "rollouts.approve_rollout"])
    starter = UserFactory(username="starter", perms=[*VIEW, "rollouts.start_rollout", "rollouts.approve_rollout"])
    reviewer = UserFactory(username="reviewer", perms=[*VIEW, "rollouts.approve_rollout"])
    application = services.application_create(
        actor="test", source="test", name="pos-bridge", team="payments", namespace="pos"
    )
    release = services.release_create(
        actor=author, source="test", application=application, version="1.0.0", templates=POS_BRIDGE_TEMPLATES
    )
    plan = services.rollout_plan_create(
        actor=planner,
        source="test",
        name="pos-bridge 1.0.0",
        release=release,
        target={"all": True},
        waves=[{"name": "canary", "count": 2}, {"name": "rest", "percent": 100}],
        max_parallel=4,
        failure_threshold={"count": 0},
        respect_windows=False,
    )
    rollout = services.rollout_start(plan=plan, actor=starter, source="test", reason="pos-bridge 1.0.0")

    # Before any approval: the driver stops at the gate, and no repository got a commit.
    wait_sweeping(lambda: rollout_state(rollout) == RolloutState.AWAITING_APPROVAL, 40, "the gate before wave 0")
    driver_decides_again(rollout, "at the gate before wave 0")
    assert commit_counts(sim) == before
    assert set(SiteRollout.objects.filter(rollout=rollout).values_list("state", flat=True)) == {"pending"}

    for who in (starter, planner, author):
        refused = approve(who, rollout)
        assert refused.status_code == 403 and "two-person rule" in refused.json()["detail"], who
    assert approve(reviewer, rollout).status_code == 200

    # Wave 0 goes out, then the rollout waits again before wave 1: its sites stay untouched.
    wait_sweeping(lambda: rollout_state(rollout) == RolloutState.AWAITING_APPROVAL, 60, "the gate before wave 1")
    canary, rest = wave_codes(rollout, 0), wave_codes(rollout, 1)
    driver_decides_again(rollout, "at the gate before wave 1")
    now = commit_counts(sim)
    assert {code: now[code] - before[code] for code in canary} == dict.fromkeys(canary, 1)
    assert {code: now[code] - before[code] for code in rest} == dict.fromkeys(rest, 0)
    assert set(SiteRollout.objects.filter(rollout=rollout, wave__index=1).values_list("state", flat=True)) == {
        SiteRolloutState.PENDING
    }

    assert approve(starter, rollout).status_code == 403
    assert approve(reviewer, rollout).status_code == 200
    wait_sweeping(lambda: rollout_state(rollout) == RolloutState.SUCCEEDED, 60, "the rollout succeeding")
    assert {code: n - before[code] for code, n in commit_counts(sim).items()} == dict.fromkeys(sim.codes, 1)
    assert Application.objects.count() == 1
