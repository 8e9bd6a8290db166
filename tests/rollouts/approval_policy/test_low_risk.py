"""Low risk under the rollout approval policy: only rollouts.mark_low_risk lifts the gates, and the mark
counts only for the plan and release it was set on, while who set it still holds the permission."""

from typing import Any

import pytest
from django.contrib.auth.models import User

from fleet.audit.models import AuditEvent
from fleet.errors import Conflict, Forbidden
from rollouts import services
from rollouts.choices import RolloutState, SiteRolloutState
from rollouts.models import Rollout, RolloutPlan
from rollouts.services import rollouts as starting
from tests.factories import SiteFactory
from tests.rollouts.approval_policy.support import RISK_OFFICER, api, person, plan_by, release_by, site_states, step
from tests.rollouts.factories import VALUES

pytestmark = pytest.mark.django_db


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
