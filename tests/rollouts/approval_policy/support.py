"""Helpers shared by the approval policy tests (no tests here): people with exactly the permissions of a role,
a release and a plan written by a given person, and one step of a rollout's real driver run in this process."""

from typing import Any

from django.contrib.auth.models import User
from rest_framework.test import APIClient

from fleet.workflows.models import WorkflowRun
from rollouts import services
from rollouts.choices import DRIVE_KIND
from rollouts.models import Release, Rollout, RolloutPlan, SiteRollout
from rollouts.workflows.driver import drive
from tests.factories import UserFactory
from tests.rollouts.conftest import VIEW
from tests.rollouts.factories import TEMPLATES, VALUES, ApplicationFactory

PLANNER = [*VIEW, "rollouts.add_rolloutplan", "rollouts.change_rolloutplan"]
STARTER = [*VIEW, "rollouts.start_rollout", "rollouts.change_rollout"]
APPROVER = [*VIEW, "rollouts.approve_rollout"]
RISK_OFFICER = [*PLANNER, "rollouts.mark_low_risk"]


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


def step(rollout: Rollout) -> Rollout:
    """One step of the rollout's real driver run, in this process."""
    run = WorkflowRun.objects.get(kind=DRIVE_KIND, subject_id=str(rollout.pk))
    drive(run, dict(run.context))
    rollout.refresh_from_db()
    return rollout


def site_states(rollout: Rollout, wave: int) -> set[str]:
    return set(SiteRollout.objects.filter(rollout=rollout, wave__index=wave).values_list("state", flat=True))
