"""The rollout page (rollouts.page and its admin view): bars that draw each state as itself, the live
fragment, elapsed time and estimate, the approval and who may give it, the plan as a table, reasons,
and a bounded number of queries whatever the number of sites."""

import datetime as dt
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from fleet.admin_display import duration
from rollouts import services
from rollouts.models import Rollout, RolloutWave
from rollouts.page import bar, estimate_left, plan_rows, rollout_page
from tests.factories import SiteFactory, UserFactory
from tests.rollouts.factories import RolloutPlanFactory, fleet_rollout

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(admin_user: object) -> Client:
    client = Client()
    client.force_login(admin_user)  # type: ignore[arg-type]
    return client


def test_pending_is_drawn_as_pending_and_rolled_back_as_rolled_back() -> None:
    not_started = bar({"pending": 13}, 13)
    assert [(s.state, s.percent) for s in not_started.segments] == [("pending", 100.0)]
    assert not_started.summary == "13 pending of 13"

    rolled_back = bar({"rolled_back": 12, "skipped": 1}, 13)
    assert rolled_back.summary == "12 rolled back, 1 skipped of 13"
    assert "succeeded" not in rolled_back.summary


def test_estimate_and_durations() -> None:
    assert estimate_left(done=0, total=10, elapsed=60, waves_left=1, bake_seconds=60) is None
    assert estimate_left(done=5, total=10, elapsed=60, waves_left=1, bake_seconds=30) == 90
    assert duration(150) == "2 min 30 s" and duration(7300) == "2 h 01 min" and duration(4) == "4 s"


def test_plan_is_a_readable_table() -> None:
    rows = dict(
        plan_rows(
            {
                "target": {"labels": "region=eu"},
                "waves": [{"name": "canary", "count": 2}, {"percent": 100}],
                "failure_threshold": {"percent": 10},
                "bake_seconds": 600,
                "require_approval": True,
            }
        )
    )
    assert rows["target"] == "sites labelled region=eu"
    assert rows["wave 0"] == "canary: up to 2 sites"
    assert rows["wave 1"] == "wave 1: up to 100% of the sites"
    assert rows["bake between waves"] == "10 min 00 s"
    assert rows["approval between waves"] == "yes"
    assert rows["failure threshold"] == "more than 10% failed halts"


def test_awaiting_approval_says_which_wave_and_who_may_approve(staff: Client) -> None:
    for _ in range(4):
        SiteFactory()
    starter = UserFactory(username="alice", is_staff=True, perms=["rollouts.start_rollout"])
    UserFactory(username="bob", is_staff=True, perms=["rollouts.approve_rollout"])
    plan = RolloutPlanFactory(
        waves=[{"name": "canary", "count": 1}, {"name": "rest", "percent": 100}],
        require_approval=True,
        two_person_rule=True,
    )
    rollout = services.rollout_start(plan=plan, actor=starter, source="test", reason="menu")
    services.rollout_wave_open(rollout=rollout, index=0, actor="t", source="test")
    RolloutWave.objects.filter(rollout=rollout, index=0).update(
        closed_at=timezone.now(), bake_until=timezone.now() + dt.timedelta(minutes=5), state="closed"
    )
    services.rollout_transition(rollout=rollout, to="awaiting_approval", actor="t", source="test")

    page = rollout_page(rollout.pk, timezone.now())

    assert page.approval.startswith("wave 1 (rest, 3 sites) waits for an approval")
    assert "bob" in page.approval.split(";")[0] and "alice (started this rollout)" in page.approval
    assert page.bake is not None and 290 < page.bake[1] <= 300
    html = staff.get(f"/admin/rollouts/rollout/{rollout.pk}/change/").content.decode()
    assert "waits for an approval" in html and "Baking wave 0" in html
    assert "/action/approve/" in html


def test_pause_reason_is_shown_and_the_fragment_refreshes(staff: Client) -> None:
    rollout = fleet_rollout(20)
    services.rollout_pause(rollout=rollout, actor="system:test", source="test", reason="dinner rush")

    live = staff.get(f"/admin/rollouts/rollout/{rollout.pk}/live/")

    assert live.status_code == 200
    body = live.content.decode()
    assert body.lstrip().startswith("{#") is False and 'id="rollout-live"' in body
    assert "dinner rush" in body and "pause" in body
    assert "waiting: unreachable" in body  # counted apart from syncing
    assert "<html" not in body  # a fragment, not a page


@pytest.mark.parametrize("sites", [30, 300])
def test_rollout_page_queries_do_not_grow_with_sites(
    staff: Client, sites: int, django_assert_max_num_queries: Any
) -> None:
    rollout = fleet_rollout(sites)
    staff.get(f"/admin/rollouts/rollout/{rollout.pk}/change/")  # warm the session and content types
    with django_assert_max_num_queries(16):
        page = staff.get(f"/admin/rollouts/rollout/{rollout.pk}/change/")
    with django_assert_max_num_queries(16):
        live = staff.get(f"/admin/rollouts/rollout/{rollout.pk}/live/")
    assert page.status_code == live.status_code == 200
    assert f"of {sites} sites" in page.content.decode()


def test_rolled_back_rollout_reads_rolled_back(staff: Client) -> None:
    rollout = fleet_rollout(10)
    Rollout.objects.filter(pk=rollout.pk).update(
        state="rolled_back", finished_at=timezone.now(), n_succeeded=0, n_rolled_back=1
    )
    html = staff.get(f"/admin/rollouts/rollout/{rollout.pk}/change/").content.decode()
    assert "rolled back" in html.lower()
    assert 'data-finished="true"' in html
