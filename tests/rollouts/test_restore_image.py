"""An application's restore image: what a replacement machine runs to restore its data (the edge's own
report of an image is ignored). Pinned, validated on write, audited, and what sites.rehydration answers."""

import pytest
from rest_framework.test import APIClient

from fleet.audit.models import AuditEvent
from rollouts.models import Application
from sites import rehydration
from tests.rollouts.factories import ApplicationFactory

pytestmark = pytest.mark.django_db

IMAGE = "registry.example.com/store/pos-restore:3.2"
DIGEST = "registry.example.com:5000/pos-restore@sha256:" + "a" * 64


@pytest.mark.parametrize("image", [IMAGE, DIGEST, "edgefleet/pos-restore:3"])
def test_a_stateful_application_names_its_restore_image(admin_api: APIClient, image: str) -> None:
    response = admin_api.post(
        "/api/v1/applications/",
        {"name": "pos", "team": "store", "namespace": "pos", "stateful": True, "restore_image": image},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["restore_image"] == image
    assert rehydration.restore_targets(["pos"]) == {
        "pos": rehydration.RestoreTarget(application="pos", namespace="pos", image=image)
    }


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("registry.example.com/pos-restore", "no tag or digest"),
        ("evil image:1", "not an image reference"),
        ("Registry.example.com/UPPER:1", "not an image reference"),
        ("pos@sha256:short", "not an image reference"),
        ("x" * 501, "500"),
    ],
)
def test_an_unpinned_or_malformed_restore_image_is_400(admin_api: APIClient, image: str, message: str) -> None:
    response = admin_api.post(
        "/api/v1/applications/",
        {"name": "pos", "team": "store", "namespace": "pos", "stateful": True, "restore_image": image},
        format="json",
    )

    assert response.status_code == 400
    assert message in str(response.json()["restore_image"])
    assert not Application.objects.exists()


def test_changing_the_restore_image_is_audited(admin_api: APIClient) -> None:
    app = ApplicationFactory(name="pos", stateful=True, restore_image=IMAGE)

    response = admin_api.patch(f"/api/v1/applications/{app.pk}/", {"restore_image": DIGEST}, format="json")

    assert response.status_code == 200, response.content
    event = AuditEvent.objects.get(verb="update", object_id=str(app.pk))
    assert event.payload["changes"]["restore_image"] == [IMAGE, DIGEST]


def test_only_stateful_applications_with_an_image_are_restore_targets() -> None:
    ApplicationFactory(name="menu", restore_image=IMAGE)  # not stateful
    ApplicationFactory(name="loyalty", stateful=True)  # no image
    ApplicationFactory(name="pos", stateful=True, restore_image=IMAGE)

    assert rehydration.provider_registered()  # the rollouts app told sites at start-up
    assert set(rehydration.restore_targets(["menu", "loyalty", "pos"])) == {"pos"}
