"""The rollout approval policy (rollouts.approvals): with FLEET_ROLLOUT_APPROVAL_POLICY on, no site changes
before a person approves the first wave and again between waves; who started the rollout, edited its
plan or wrote its release cannot approve it; only rollouts.mark_low_risk lifts the gates; start, cancel
and roll back need a reason. The driver here is the real one (rollouts.workflows.driver.drive), run in-process."""

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from fleet.audit.models import AuditEvent
from fleet.errors import Conflict, Forbidden
from fleet.workflows.models import WorkflowRun
from rollouts import services
from rollouts.choices import DRIVE_KIND, RolloutState, SiteRolloutState
from rollouts.models import Release, Rollout, RolloutPlan, RolloutWave, SiteRollout
from rollouts.services import rollouts as starting
from rollouts.workflows.driver import drive
from tests.factories import SiteFactory, UserFactory
from tests.rollouts.conftest import VIEW
from tests.rollouts.factories import TEMPLATES, VALUES, ApplicationFactory
from tests.support.services import PRODUCTION_ENV

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
PLANNER = [*VIEW, "rollouts.add_rolloutplan", "rollouts.change_rolloutplan"]
STARTER = [*VIEW, "rollouts.start_rollout", "rollouts.change_rollout"]
APPROVER = [*VIEW, "rollouts.approve_rollout"]
RISK_OFFICER = [*PLANNER, "rollouts.mark_low_risk"]


@pytest.fixture
def policy(settings: Any) -> None:
    settings.FLEET_ROLLOUT_APPROVAL_POLICY = True


def person(username: str, perms: list[str]) -> User:
    user: User = UserFactory(username=username, perms=perms)
    return user


def api(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def release_by(author: User) -> Release:
    return services.release_create(
        actor=author,
        source="test",
        application=ApplicationFactory(),
        version="1.0.0",
        templates=TEMPLATES,
        values=VALUES,
    )


def plan_by(editor: User, release: Release, **fields: Any) -> RolloutPlan:
    return services.rollout_plan_create(
        actor=editor,
        source="test",
        name=fields.pop("name", "spring"),
        release=release,
        target={"all": True},
        waves=[{"name": "canary", "count": 2}, {"name": "rest", "percent": 100}],
        failure_threshold={"count": 0},
        respect_windows=False,
        **fields,
    )


@pytest.fixture
def people() -> dict[str, User]:
    return {
        "author": person("author", [*VIEW, "rollouts.add_release", "rollouts.approve_rollout"]),
        "editor": person("editor", [*PLANNER, "rollouts.approve_rollout"]),
        "starter": person("starter", [*STARTER, "rollouts.approve_rollout"]),
        "approver": person("approver", APPROVER),
    }


@pytest.fixture
def rollout(policy: None, people: dict[str, User]) -> Rollout:
    for _ in range(5):
        SiteFactory()
    plan = plan_by(people["editor"], release_by(people["author"]))
    return services.rollout_start(plan=plan, actor=people["starter"], source="test", reason="weekly release")


def step(rollout: Rollout) -> Rollout:
    """One step of the rollout's real driver run, in this process."""
    run = WorkflowRun.objects.get(kind=DRIVE_KIND, subject_id=str(rollout.pk))
    drive(run, dict(run.context))
    rollout.refresh_from_db()
    return rollout


def site_states(rollout: Rollout, wave: int) -> set[str]:
    return set(SiteRollout.objects.filter(rollout=rollout, wave__index=wave).values_list("state", flat=True))


# --- the gates --------------------------------------------------------------------------------------


def test_with_the_policy_no_site_changes_before_the_first_wave_is_approved(rollout: Rollout) -> None:
    assert rollout.plan_snapshot["approve_first_wave"] is True
    assert rollout.plan_snapshot["require_approval"] is True and rollout.plan_snapshot["two_person_rule"] is True

    rollout = step(rollout)
    step(rollout)  # and again: still nothing

    assert rollout.state == RolloutState.AWAITING_APPROVAL
    assert site_states(rollout, 0) == site_states(rollout, 1) == {SiteRolloutState.PENDING}
    assert RolloutWave.objects.get(rollout=rollout, index=0).opened_at is None
    assert not WorkflowRun.objects.exclude(kind=DRIVE_KIND).exists()  # no site run was ever started


def test_after_an_approval_the_first_wave_runs_then_the_next_waits_again(
    rollout: Rollout, people: dict[str, User]
) -> None:
    rollout = step(rollout)

    approved = services.rollout_approve(rollout=rollout, actor=people["approver"], source="test", reason="ok")
    assert approved.state == RolloutState.RUNNING
    assert RolloutWave.objects.get(rollout=rollout, index=0).approved_by == people["approver"]
    rollout = step(approved)
    assert site_states(rollout, 0) == {SiteRolloutState.COMMITTING}
    assert site_states(rollout, 1) == {SiteRolloutState.PENDING}

    for row in SiteRollout.objects.filter(rollout=rollout, wave__index=0):
        services.site_rollout_transition(site_rollout=row, to=SiteRolloutState.SUCCEEDED, actor="w", source="workflow")
    rollout = step(rollout)

    assert rollout.state == RolloutState.AWAITING_APPROVAL
    assert RolloutWave.objects.get(rollout=rollout, index=0).closed_at is not None
    assert site_states(rollout, 1) == {SiteRolloutState.PENDING}
    assert RolloutWave.objects.get(rollout=rollout, index=1).approved_at is None
    event = AuditEvent.objects.filter(verb="transition", payload__to="awaiting_approval").order_by("-id").first()
    assert event is not None and event.payload["reason"] == "wave 1 (rest) needs an approval"


@pytest.mark.parametrize(
    ("who", "why"),
    [
        ("starter", "started this rollout"),
        ("editor", "last edited plan spring"),
        ("author", "wrote release"),
    ],
)
def test_starter_plan_editor_and_release_author_cannot_approve(
    rollout: Rollout, people: dict[str, User], who: str, why: str
) -> None:
    rollout = step(rollout)

    response = api(people[who]).post(f"/api/v1/rollouts/{rollout.pk}/approve/", {"reason": "mine"}, format="json")

    assert response.status_code == 403
    assert "two-person rule" in response.json()["detail"] and why in response.json()["detail"]
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.AWAITING_APPROVAL
    assert RolloutWave.objects.get(rollout=rollout, index=0).approved_at is None
    assert not AuditEvent.objects.filter(verb="approve").exists()

    other = api(people["approver"]).post(f"/api/v1/rollouts/{rollout.pk}/approve/", {"reason": "ok"}, format="json")
    assert other.status_code == 200, other.content
    assert other.json()["waves"][0]["approved_by"] == "approver"


def test_the_releases_last_editor_cannot_approve_either(policy: None, people: dict[str, User]) -> None:
    SiteFactory()
    fixer = person("fixer", [*VIEW, "rollouts.change_release", "rollouts.approve_rollout"])
    release = release_by(people["author"])
    services.release_update(release=release, actor=fixer, source="test", values={**VALUES, "greeting": "hi"})
    plan = plan_by(people["editor"], release)
    rollout = step(services.rollout_start(plan=plan, actor=people["starter"], source="test", reason="weekly"))

    with pytest.raises(Forbidden, match="fixer last edited release"):
        services.rollout_approve(rollout=rollout, actor=fixer, source="test")
    with pytest.raises(Forbidden, match="needs a person"):
        services.rollout_approve(rollout=rollout, actor="system:beat", source="test")


def test_the_editor_at_start_stays_excluded_after_someone_else_edits_the_plan(
    rollout: Rollout, people: dict[str, User]
) -> None:
    rollout = step(rollout)
    services.rollout_plan_update(plan=rollout.plan, actor=people["approver"], source="test", bake_seconds=60)

    with pytest.raises(Forbidden, match="editor last edited plan spring before it started"):
        services.rollout_approve(rollout=rollout, actor=people["editor"], source="test")
    with pytest.raises(Forbidden, match="approver last edited plan spring"):
        services.rollout_approve(rollout=rollout, actor=people["approver"], source="test")


def test_without_the_policy_a_plan_runs_as_it_says(people: dict[str, User]) -> None:
    SiteFactory()
    plan = plan_by(people["editor"], release_by(people["author"]))

    rollout = step(services.rollout_start(plan=plan, actor=people["starter"], source="test", reason="weekly"))

    assert rollout.plan_snapshot["approve_first_wave"] is False
    assert rollout.state == RolloutState.RUNNING
    assert site_states(rollout, 0) == {SiteRolloutState.COMMITTING}


# --- low risk -----------------------------------------------------------------------------------------


def test_marking_a_plan_low_risk_needs_the_permission(policy: None, people: dict[str, User]) -> None:
    release = release_by(people["author"])
    body = {
        "name": "tiny",
        "release": release.pk,
        "target": {"all": True},
        "waves": [{"percent": 100}],
        "failure_threshold": {"count": 0},
        "low_risk": True,
    }
    SiteFactory()

    refused = api(people["editor"]).post("/api/v1/rollout-plans/", body, format="json")
    assert refused.status_code == 403
    assert "rollouts.mark_low_risk" in refused.json()["detail"] and refused.json()["low_risk"]
    assert not RolloutPlan.objects.exists()

    officer = person("officer", RISK_OFFICER)
    created = api(officer).post("/api/v1/rollout-plans/", body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["low_risk"] is True and created.json()["low_risk_by"] == "officer"

    plan = RolloutPlan.objects.get()
    services.rollout_plan_update(plan=plan, actor=officer, source="test", low_risk=False)
    patched = api(people["editor"]).patch(f"/api/v1/rollout-plans/{plan.pk}/", {"low_risk": True}, format="json")
    assert patched.status_code == 403
    assert RolloutPlan.objects.get().low_risk is False


def test_a_low_risk_plan_runs_without_gates_under_the_policy(policy: None, people: dict[str, User]) -> None:
    SiteFactory()
    officer = person("officer", RISK_OFFICER)
    plan = plan_by(officer, release_by(people["author"]), low_risk=True)

    rollout = step(services.rollout_start(plan=plan, actor=people["starter"], source="test", reason="typo fix"))

    assert rollout.plan_snapshot["low_risk"] is True and rollout.plan_snapshot["approve_first_wave"] is False
    assert rollout.state == RolloutState.RUNNING
    assert site_states(rollout, 0) == {SiteRolloutState.COMMITTING}
    start = AuditEvent.objects.get(verb="start")
    assert start.payload["reason"] == "typo fix" and start.payload["gates"]["low_risk"] is True


def test_any_change_to_the_plan_or_its_release_clears_the_mark(policy: None, people: dict[str, User]) -> None:
    officer = person("officer", [*RISK_OFFICER, "rollouts.change_release"])
    release = release_by(people["author"])
    plan = plan_by(officer, release, low_risk=True)

    services.rollout_plan_update(plan=plan, actor=people["editor"], source="test", max_parallel=50)
    plan.refresh_from_db()
    assert (plan.low_risk, plan.low_risk_by) == (False, None)
    assert AuditEvent.objects.filter(verb="update", payload__changes__low_risk=[True, False]).exists()

    services.rollout_plan_update(plan=plan, actor=officer, source="test", low_risk=True)
    services.release_update(release=release, actor=people["author"], source="test", values={**VALUES, "replicas": 9})
    plan.refresh_from_db()
    assert plan.low_risk is False
    assert AuditEvent.objects.filter(verb="clear_low_risk", object_id=str(plan.pk)).exists()

    # Keeping the mark while changing the plan needs the permission too.
    services.rollout_plan_update(plan=plan, actor=officer, source="test", low_risk=True)
    with pytest.raises(Forbidden, match="rollouts.mark_low_risk"):
        services.rollout_plan_update(plan=plan, actor=people["editor"], source="test", low_risk=True, bake_seconds=5)
    plan.refresh_from_db()
    assert plan.low_risk is True and plan.bake_seconds == 0


def test_the_mark_counts_only_while_who_set_it_holds_the_permission(policy: None, people: dict[str, User]) -> None:
    SiteFactory()
    officer = person("officer", RISK_OFFICER)
    plan = plan_by(officer, release_by(people["author"]), low_risk=True)
    officer.user_permissions.clear()

    rollout = step(services.rollout_start(plan=plan, actor=people["starter"], source="test", reason="weekly"))

    assert rollout.plan_snapshot["low_risk"] is False and rollout.plan_snapshot["approve_first_wave"] is True
    assert rollout.state == RolloutState.AWAITING_APPROVAL


def test_a_plan_changed_while_a_start_renders_is_not_started_with_a_stale_mark(
    policy: None, people: dict[str, User], monkeypatch: pytest.MonkeyPatch
) -> None:
    SiteFactory()
    plan = plan_by(person("officer", RISK_OFFICER), release_by(people["author"]), low_risk=True)
    checked = starting._plan_and_check

    def check_then_someone_edits(plan_: RolloutPlan) -> Any:
        result = checked(plan_)  # the start has read and rendered the low-risk plan; then an edit lands
        services.rollout_plan_update(plan=plan_, actor=people["editor"], source="test", max_parallel=99)
        return result

    monkeypatch.setattr(starting, "_plan_and_check", check_then_someone_edits)

    with pytest.raises(Conflict, match="changed while the rollout was being prepared"):
        services.rollout_start(plan=plan, actor=people["starter"], source="test", reason="weekly")
    assert not Rollout.objects.exists()
    assert RolloutPlan.objects.get().low_risk is False


def test_a_system_actor_cannot_mark_a_plan_low_risk(policy: None, people: dict[str, User]) -> None:
    release = release_by(people["author"])

    with pytest.raises(Forbidden, match="needs a person with the rollouts.mark_low_risk permission"):
        services.rollout_plan_create(
            actor="system:beat",
            source="beat",
            name="auto",
            release=release,
            target={"all": True},
            waves=[{"percent": 100}],
            failure_threshold={"count": 0},
            low_risk=True,
        )
    assert not RolloutPlan.objects.exists()


# --- reasons ------------------------------------------------------------------------------------------


def test_start_cancel_and_rollback_need_a_reason(people: dict[str, User]) -> None:
    SiteFactory()
    plan = plan_by(people["editor"], release_by(people["author"]))
    starter = api(people["starter"])

    for body in ({}, {"reason": ""}, {"reason": "   "}):
        refused = starter.post(f"/api/v1/rollout-plans/{plan.pk}/start/", body, format="json")
        assert refused.status_code == 400 and "reason" in refused.json(), refused.content
    assert not Rollout.objects.exists()

    started = starter.post(f"/api/v1/rollout-plans/{plan.pk}/start/", {"reason": "weekly"}, format="json")
    assert started.status_code == 202
    url = f"/api/v1/rollouts/{started.json()['id']}"
    for action in ("cancel", "rollback"):
        refused = starter.post(f"{url}/{action}/", {}, format="json")
        assert refused.status_code == 400 and refused.json()["reason"] == ["a reason is required"], action
    rollout = Rollout.objects.get()
    assert rollout.state == RolloutState.RUNNING and rollout.rollback_requested_at is None

    assert starter.post(f"{url}/cancel/", {"reason": "wrong release"}, format="json").json()["state"] == "cancelled"


def test_the_admin_start_page_asks_for_a_reason(people: dict[str, User]) -> None:
    SiteFactory()
    plan = plan_by(people["editor"], release_by(people["author"]))
    client = Client()
    people["starter"].is_staff = True
    people["starter"].save()
    client.force_login(people["starter"])

    refused = client.post(f"/admin/rollouts/rolloutplan/{plan.pk}/start/", {"reason": ""})
    assert refused.status_code == 200 and "This field is required" in refused.content.decode()
    assert not Rollout.objects.exists()

    started = client.post(f"/admin/rollouts/rolloutplan/{plan.pk}/start/", {"reason": "weekly"})
    assert started.status_code == 302 and Rollout.objects.get().started_by == people["starter"]


def test_the_demo_rollout_waits_for_an_approval_under_the_policy(policy: None) -> None:
    for _ in range(3):
        SiteFactory()
    out = StringIO()

    call_command("demo_rollout", "--bake", "0", stdout=out)

    rollout = step(Rollout.objects.get())
    assert "waits for an approval" in out.getvalue()
    assert rollout.plan_snapshot["approve_first_wave"] is True and rollout.plan.low_risk is False
    assert rollout.state == RolloutState.AWAITING_APPROVAL
    assert site_states(rollout, 0) == {SiteRolloutState.PENDING}


# --- the setting ----------------------------------------------------------------------------------


def _policy_under(env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    script = "from django.conf import settings; print(settings.FLEET_ROLLOUT_APPROVAL_POLICY)"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env={**clean, "FLEET_DATA_DIR": "/tmp/edgefleet-settings-test", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]  # after the shell's own "objects imported" line


def test_the_policy_is_on_in_production_and_off_in_development() -> None:
    assert _policy_under(PRODUCTION_ENV) == "True"
    assert _policy_under({"FLEET_ENV": "development"}) == "False"
    assert _policy_under({"FLEET_ENV": "development", "FLEET_ROLLOUT_APPROVAL_POLICY": "1"}) == "True"
