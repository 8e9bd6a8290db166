"""`POST device/heartbeat/`: node-credential authentication, what it records, backups, bad input, cost;
and that a machine's backup report cannot choose what a replacement runs, nor where, nor pin "the latest"."""

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from fleet.errors import Invalid
from rollouts.models import Application
from sites import devices, heartbeats, selectors
from sites.choices import NodeHealth, NodeState
from sites.models import Backup, Node, NodeCredential
from tests.factories import NodeFactory, api_key_for
from tests.sites.conftest import POS_RESTORE_IMAGE

pytestmark = pytest.mark.django_db

URL = "/api/v1/device/heartbeat/"


def _backup(application: str = "pos", taken_at: str = "2026-11-20T03:00:00Z", **extra: Any) -> dict[str, Any]:
    return {
        "application": application,
        "namespace": application,
        "taken_at": taken_at,
        "location": f"s3://backups/TX-0412/{application}/{taken_at}.tar.zst",
        "size": 1234,
        "restore_image": "registry.local/restore:1",
        **extra,
    }


def _stateful(*names: str) -> None:
    """Applications whose backups are kept: stateful, each with its namespace and restore image."""
    Application.objects.bulk_create(
        [
            Application(name=name, team="t", namespace=name, stateful=True, restore_image=f"registry.local/{name}:1")
            for name in names
        ]
    )


@pytest.fixture
def node(ready_site: Any, pos_application: Application) -> Any:
    return NodeFactory(serial="SN-1", site=ready_site, state=NodeState.ACTIVE)


@pytest.fixture
def node_api(node: Any) -> APIClient:
    _credential, plaintext = devices.node_credentials_issue(node=node, actor="test", source="test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Node {plaintext}")
    return client


def test_heartbeat_records_last_seen_versions_and_backups(node_api: APIClient, node: Any) -> None:
    response = node_api.post(URL, {"versions": {"k3s": "v1.31.2+k3s1"}, "backups": [_backup()]}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["node_id"], body["state"]) == (node.pk, "active")
    assert body["server_time"]
    node.refresh_from_db()
    node.site.refresh_from_db()
    assert node.last_seen_at is not None
    assert node.versions == {"k3s": "v1.31.2+k3s1"}
    assert node.site.last_heartbeat_at == node.last_seen_at
    assert NodeCredential.objects.get(node=node).last_used_at == node.last_seen_at
    backup = Backup.objects.get()
    assert (backup.site, backup.reported_by, backup.application, backup.size) == (node.site, node, "pos", 1234)


def test_repeated_backup_reports_are_idempotent(node_api: APIClient, node: Any) -> None:
    body = {"backups": [_backup(), _backup(size=99)]}  # same backup twice in one body: the last wins
    node_api.post(URL, body, format="json")
    node_api.post(URL, body, format="json")

    assert Backup.objects.count() == 1
    assert Backup.objects.get().size == 99


def test_latest_backups_per_application(node_api: APIClient, node: Any) -> None:
    _stateful("kitchen")
    node_api.post(
        URL,
        {
            "backups": [
                _backup("pos", "2026-11-19T03:00:00Z"),
                _backup("pos", "2026-11-20T03:00:00Z"),
                _backup("kitchen", "2026-11-18T03:00:00Z"),
            ]
        },
        format="json",
    )

    latest = selectors.latest_backups(node.site)

    assert set(latest) == {"pos", "kitchen"}
    assert latest["pos"].taken_at.day == 20


def test_heartbeat_costs_a_constant_number_of_queries(
    node_api: APIClient, django_assert_max_num_queries: Any, node: Any
) -> None:
    Node.objects.filter(pk=node.pk).update(health=NodeHealth.READY)  # the common case: a machine in good health
    _stateful(*(f"app{i}" for i in range(100)))
    backups = [_backup(f"app{i}") for i in range(100)]
    with django_assert_max_num_queries(8):
        response = node_api.post(URL, {"versions": {"k3s": "v1"}, "backups": backups}, format="json")
    assert response.status_code == 200
    assert Backup.objects.count() == 100


def test_a_machine_not_seen_that_heartbeats_is_not_ready_until_its_cluster_says_ready(
    node_api: APIClient, django_assert_max_num_queries: Any, node: Any
) -> None:
    # Given a machine recorded as not seen (it died; its site's health names it)
    Node.objects.filter(pk=node.pk).update(health=NodeHealth.NOT_SEEN, health_since=timezone.now())
    # When it heartbeats again: its health and its site's are decided again, once, at a bounded cost
    with django_assert_max_num_queries(8 + 8):
        assert node_api.post(URL, {}, format="json").status_code == 200
    node.refresh_from_db()
    assert (node.health, node.health_reason) == (
        NodeHealth.NOT_READY,
        "heard from; its cluster has not reported it Ready yet",
    )
    # and the next heartbeat is the common one again
    with django_assert_max_num_queries(8):
        assert node_api.post(URL, {}, format="json").status_code == 200


@pytest.mark.parametrize(
    "header", [None, "Node", "Node efn_unknown", "Token abc", "Node a b"], ids=["none", "empty", "unknown", "user", "3"]
)
def test_heartbeat_without_a_valid_credential_is_401(api: APIClient, node: Any, header: str | None) -> None:
    if header:
        api.credentials(HTTP_AUTHORIZATION=header)

    response = api.post(URL, {}, format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Node"
    assert response.json()["detail"]


def test_revoked_credential_is_401(node_api: APIClient, node: Any) -> None:
    devices.node_credentials_revoke(node=node, actor="test", source="test", reason="wipe")

    response = node_api.post(URL, {}, format="json")

    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]
    node.refresh_from_db()
    assert node.last_seen_at is None


def test_new_credential_revokes_the_old_one(node_api: APIClient, node: Any) -> None:
    devices.node_credentials_issue(node=node, actor="test", source="test")

    assert node_api.post(URL, {}, format="json").status_code == 401
    assert NodeCredential.objects.filter(node=node, revoked_at__isnull=True).count() == 1


def test_user_token_does_not_authenticate_a_heartbeat(api: APIClient, admin_user: Any) -> None:
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_key_for(admin_user)}")

    assert api.post(URL, {}, format="json").status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"versions": ["k3s"]}, "versions"),
        ({"versions": {"k3s": {"nested": 1}}}, "versions"),
        ({"backups": {"application": "pos"}}, "backups"),
        ({"backups": [_backup(taken_at="yesterday")]}, "taken_at"),
        ({"backups": [_backup(taken_at="2999-01-01T00:00:00Z")]}, "taken_at"),
        ({"backups": [_backup(namespace=["pos"])]}, "namespace"),
        ({"backups": [_backup(restore_image={"image": "evil"})]}, "restore_image"),
        ({"backups": [_backup(size=-1)]}, "size"),
        ({"backups": [{k: v for k, v in _backup().items() if k != "location"}]}, "location"),
        ({"backups": [_backup(f"a{i}") for i in range(101)]}, "backups"),
    ],
    ids=[
        "versions-list",
        "versions-nested",
        "backups-object",
        "taken_at",
        "taken_at-future",
        "namespace-list",
        "image-object",
        "size",
        "location",
        "too-many",
    ],
)
def test_malformed_heartbeat_is_400_naming_the_field(node_api: APIClient, node: Any, body: dict, field: str) -> None:
    response = node_api.post(URL, body, format="json")

    assert response.status_code == 400
    assert field in response.json()["detail"]
    assert not Backup.objects.exists()
    node.refresh_from_db()
    assert node.last_seen_at is None  # nothing recorded, not even the heartbeat


def test_huge_heartbeat_body_is_400(node_api: APIClient) -> None:
    response = node_api.post(URL, {"versions": {"k3s": "v"}, "pad": "x" * 300_000}, format="json")

    assert response.status_code == 400
    assert "larger than" in response.json()["detail"]


def test_heartbeat_is_throttled_per_node(node_api: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from sites.api.device import DeviceThrottle

    monkeypatch.setattr(DeviceThrottle, "THROTTLE_RATES", {"device": "2/min"})

    answers = [node_api.post(URL, {}, format="json").status_code for _ in range(3)]

    assert answers == [200, 200, 429]


# --- the machine does not choose what restores its data -------------------------------------------------


def test_a_reported_restore_image_and_namespace_are_not_taken(node_api: APIClient, node: Any) -> None:
    body = {"backups": [_backup(namespace="kube-system", restore_image="evil/image:latest")]}

    response = node_api.post(URL, body, format="json")

    assert response.status_code == 200, response.content
    assert (response.json()["backups_kept"], response.json()["backups_ignored"]) == (1, {})
    backup = Backup.objects.get()
    assert backup.namespace == "pos"  # the application's, not the one reported
    assert not hasattr(backup, "restore_image")  # the machine's choice of image is not even stored
    assert "evil/image" not in str(Backup.objects.values().get())


def test_backups_of_applications_without_a_restore_target_are_not_kept(node_api: APIClient, node: Any) -> None:
    Application.objects.create(name="menu", team="t", namespace="menu", stateful=False)
    Application.objects.create(name="loyalty", team="t", namespace="loyalty", stateful=True)  # no restore image

    response = node_api.post(
        URL, {"backups": [_backup("menu"), _backup("loyalty"), _backup("unheard-of"), _backup()]}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["backups_kept"] == 1
    assert set(response.json()["backups_ignored"]) == {"menu", "loyalty", "unheard-of"}
    assert list(Backup.objects.values_list("application", flat=True)) == ["pos"]


def test_a_backup_taken_in_the_future_is_refused_and_nothing_recorded(node_api: APIClient, node: Any) -> None:
    ahead = (timezone.now() + dt.timedelta(hours=1)).isoformat()

    response = node_api.post(URL, {"backups": [_backup("pos", ahead), _backup("pos")]}, format="json")

    assert response.status_code == 400
    assert "taken_at" in response.json()["detail"] and "in the future" in response.json()["detail"]
    assert not Backup.objects.exists()


def test_a_clock_a_little_ahead_is_tolerated(node_api: APIClient, node: Any) -> None:
    ahead = (timezone.now() + dt.timedelta(minutes=1)).isoformat()

    assert node_api.post(URL, {"backups": [_backup("pos", ahead)]}, format="json").status_code == 200
    assert Backup.objects.count() == 1


def test_the_service_refuses_a_future_backup_too(node: Any) -> None:
    credential, _plain = devices.node_credentials_issue(node=node, actor="test", source="test")
    report = heartbeats.BackupReport(
        application="pos", namespace="pos", taken_at=timezone.now() + dt.timedelta(days=365), location="s3://x", size=1
    )

    with pytest.raises(Invalid, match="in the future"):
        heartbeats.device_heartbeat(credential=credential, versions=None, backups=[report])

    assert not Backup.objects.exists()


def test_a_future_backup_recorded_before_the_rule_never_wins(node: Any) -> None:
    now = timezone.now()
    for taken, where in ((now - dt.timedelta(days=1), "s3://b/real"), (now + dt.timedelta(days=3650), "s3://b/pin")):
        Backup.objects.create(
            site=node.site, application="pos", namespace="pos", taken_at=taken, location=where, size=1, reported_at=now
        )

    assert selectors.latest_backups(node.site)["pos"].location == "s3://b/real"


def test_the_restore_target_comes_from_the_application(pos_application: Application) -> None:
    from sites import rehydration

    targets = rehydration.restore_targets(["pos", "unknown"])

    assert targets == {"pos": rehydration.RestoreTarget(application="pos", namespace="pos", image=POS_RESTORE_IMAGE)}
    unpinned = "registry.example.com/pos/restore"  # no tag: refused on save, here written behind the services
    Application.objects.filter(pk=pos_application.pk).update(restore_image=unpinned)
    assert rehydration.restore_targets(["pos"]) == {}  # checked again at use
