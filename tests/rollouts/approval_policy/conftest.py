"""Fixtures for the approval policy tests: the policy on, and the people of a rollout (who wrote its release,
edited its plan, started it, and someone else who may approve)."""

from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.rollouts.approval_policy.support import APPROVER, PLANNER, STARTER, person
from tests.rollouts.conftest import VIEW


@pytest.fixture
def policy(settings: Any) -> None:
    settings.FLEET_ROLLOUT_APPROVAL_POLICY = True


@pytest.fixture
def people() -> dict[str, User]:
    return {
        "author": person("author", [*VIEW, "rollouts.add_release", "rollouts.approve_rollout"]),
        "editor": person("editor", [*PLANNER, "rollouts.approve_rollout"]),
        "starter": person("starter", [*STARTER, "rollouts.approve_rollout"]),
        "approver": person("approver", APPROVER),
    }
