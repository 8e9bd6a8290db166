"""The rollout approval policy's gates (rollouts.approvals): with FLEET_ROLLOUT_APPROVAL_POLICY on, no site
changes before a person approves the first wave and again between waves, and who started the rollout, edited
its plan or wrote its release cannot approve it; the policy is on in production. Lifting the gates is
test_low_risk.py, the reasons people give test_reasons.py. The driver here is the real one
(rollouts.workflows.driver.drive), run in-process."""

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from fleet.audit.models import AuditEvent
from fleet.errors import Forbidden
from fleet.workflows.models import WorkflowRun
from rollouts import services
from rollouts.choices import DRIVE_KIND, RolloutState, SiteRolloutState
from rollouts.models import Rollout, RolloutWave, SiteRollout
from tests.factories import SiteFactory
from tests.rollouts.approval_policy.support import api, person, plan_by, release_by, site_states, step
from tests.rollouts.conftest import VIEW
from tests.rollouts.factories import VALUES
from tests.support.services import PRODUCTION_ENV

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def rollout(policy: None, people: dict[str, User]) -> Rollout:
    for _ in range(5):
        SiteFactory()
    plan = plan_by(people["editor"], release_by(people["author"]))
    return services.rollout_start(plan=plan, actor=people["starter"], source="test", reason="weekly release")


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
