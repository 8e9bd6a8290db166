"""Fixtures for the rollouts tests: users with exactly the rollout permissions a test is about."""

import pytest
from rest_framework.test import APIClient

from tests.factories import UserFactory

VIEW = [
    "rollouts.view_application",
    "rollouts.view_release",
    "rollouts.view_rolloutplan",
    "rollouts.view_rollout",
]


def client_for(username: str, perms: list[str]) -> APIClient:
    client = APIClient()
    client.force_authenticate(UserFactory(username=username, perms=perms))
    return client


@pytest.fixture
def viewer_api(db: None) -> APIClient:
    return client_for("viewer", VIEW)


@pytest.fixture
def planner_api(db: None) -> APIClient:
    """May create applications, releases and plans, but not start or approve rollouts."""
    return client_for(
        "planner",
        [
            *VIEW,
            "rollouts.add_application",
            "rollouts.add_release",
            "rollouts.add_rolloutplan",
            "rollouts.change_rollout",
        ],
    )
