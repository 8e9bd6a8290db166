"""Under the rollout approval policy's rules, start, cancel and roll back need a reason, in the API and on the
admin's start page."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from rollouts.choices import RolloutState
from rollouts.models import Rollout
from tests.factories import SiteFactory
from tests.rollouts.approval_policy.support import api, plan_by, release_by

pytestmark = pytest.mark.django_db


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
