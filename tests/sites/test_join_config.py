"""The K3s join configuration of a site: write-only through the API and admin, encrypted at rest,
defaulted by the fleet import; and the staff side of backups and node credentials."""

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from fleet.audit.models import AuditEvent
from sites import devices
from sites.choices import NodeState
from sites.models import Backup, Cluster, NodeCredential
from tests.factories import NodeFactory, SiteFactory

pytestmark = pytest.mark.django_db

SECRET = "K10-join-s3cret::server:abc"


def test_join_config_is_write_only_and_encrypted(admin_api: APIClient) -> None:
    site = SiteFactory(code="TX-0412")

    response = admin_api.patch(
        f"/api/v1/sites/{site.code}/cluster/",
        {"join_server_url": "https://10.0.0.1:6443", "join_token": SECRET},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert response.json()["join_server_url"] == "https://10.0.0.1:6443"
    assert response.json()["has_join_token"] is True
    assert SECRET not in response.content.decode()
    for path in (f"/api/v1/sites/{site.code}/", f"/api/v1/sites/{site.code}/cluster/", "/api/v1/audit-events/"):
        assert SECRET not in admin_api.get(path).content.decode()
    stored = Cluster.objects.values_list("join_token_encrypted", flat=True).get(site=site)
    assert SECRET not in stored
    assert Cluster.objects.get(site=site).join_token() == SECRET
    assert AuditEvent.objects.filter(verb="set_join_config").count() == 1


def test_join_config_and_credentials_in_one_request(admin_api: APIClient) -> None:
    site = SiteFactory()

    response = admin_api.put(
        f"/api/v1/sites/{site.code}/cluster/",
        {"api_url": "https://10.0.0.1:6443", "token": "kube", "join_token": SECRET},
        format="json",
    )

    assert response.status_code == 200, response.content
    cluster = Cluster.objects.get(site=site)
    assert cluster.has_credentials and cluster.join_token() == SECRET


def test_bad_join_server_url_is_400_and_changes_nothing(admin_api: APIClient) -> None:
    site = SiteFactory()

    response = admin_api.patch(
        f"/api/v1/sites/{site.code}/cluster/", {"join_server_url": "10.0.0.1:6443", "join_token": "x"}, format="json"
    )

    assert response.status_code == 400
    assert "join_server_url" in response.json()
    assert not Cluster.objects.get(site=site).join_token_encrypted


def test_admin_cluster_page_never_shows_the_join_token(admin_user: Any) -> None:
    site = SiteFactory()
    client = Client()
    client.force_login(admin_user)
    url = f"/admin/sites/cluster/{site.cluster.pk}/change/"

    saved = client.post(url, {"api_url": "", "join_server_url": "https://10.0.0.9:6443", "join_token": SECRET})
    page = client.get(url)

    assert saved.status_code == 302, saved.content.decode()[:2000]
    assert Cluster.objects.get(site=site).join_token() == SECRET
    assert SECRET not in page.content.decode()


def test_rotate_secrets_rotates_join_tokens(settings: Any) -> None:
    from cryptography.fernet import Fernet

    site = SiteFactory()
    from sites import services

    services.cluster_set_join_config(cluster=site.cluster, actor="t", source="t", server_url="https://x", token=SECRET)
    settings.FLEET_SECRET_KEYS = [Fernet.generate_key().decode(), *settings.FLEET_SECRET_KEYS]

    call_command("rotate_secrets")

    settings.FLEET_SECRET_KEYS = settings.FLEET_SECRET_KEYS[:1]
    assert Cluster.objects.get(site=site).join_token() == SECRET


# --- import -----------------------------------------------------------------------------------------------


def _fleet(tmp_path: Path, **extra: Any) -> Path:
    site = {
        "code": "TX-0412",
        "name": "Austin",
        "region": "us-south",
        "timezone": "America/Chicago",
        "api_url": "http://127.0.0.1:8700/sites/TX-0412",
        "token": "tok",
        "nodes": [],
        **extra,
    }
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps({"sites": [site]}))
    return path


def test_import_defaults_the_join_config_once(tmp_path: Path) -> None:
    path = _fleet(tmp_path)

    call_command("fleet_import", str(path))
    cluster = Cluster.objects.get()
    first = cluster.join_token()
    call_command("fleet_import", str(path))
    cluster.refresh_from_db()

    assert cluster.join_server_url == "http://127.0.0.1:8700/sites/TX-0412"
    assert len(first) == 64
    assert cluster.join_token() == first  # not regenerated on the second import
    assert AuditEvent.objects.filter(verb="set_join_config").count() == 1


def test_import_takes_the_join_config_from_the_entry(tmp_path: Path) -> None:
    call_command("fleet_import", str(_fleet(tmp_path, k3s_server_url="https://10.9.9.9:6443", k3s_token=SECRET)))

    cluster = Cluster.objects.get()
    assert (cluster.join_server_url, cluster.join_token()) == ("https://10.9.9.9:6443", SECRET)


# --- backups and node credentials for staff ------------------------------------------------------------------


def _backup(site: Any, application: str, day: int) -> Backup:
    return Backup.objects.create(
        site=site,
        application=application,
        namespace=application,
        taken_at=f"2026-11-{day:02d}T03:00:00Z",
        location=f"s3://b/{application}/{day}",
        size=1,
        reported_at="2026-11-25T00:00:00Z",
    )


def test_site_backups_lists_the_latest_per_application_or_all(admin_api: APIClient, readonly_api: APIClient) -> None:
    site = SiteFactory()
    _backup(site, "pos", 19), _backup(site, "pos", 20), _backup(site, "kitchen", 18)
    _backup(SiteFactory(), "pos", 21)

    latest = admin_api.get(f"/api/v1/sites/{site.code}/backups/")
    every = admin_api.get(f"/api/v1/sites/{site.code}/backups/?all=1")

    assert latest.status_code == 200
    assert [(b["application"], b["location"]) for b in latest.json()] == [
        ("kitchen", "s3://b/kitchen/18"),
        ("pos", "s3://b/pos/20"),
    ]
    assert len(every.json()) == 3
    assert readonly_api.get(f"/api/v1/sites/{site.code}/backups/").status_code == 403


def test_revoke_node_credentials_through_the_api(admin_api: APIClient, readonly_api: APIClient) -> None:
    node = NodeFactory(state=NodeState.ACTIVE)
    devices.node_credentials_issue(node=node, actor="t", source="t")

    refused = readonly_api.post(f"/api/v1/nodes/{node.pk}/revoke-credentials/", {"reason": "x"}, format="json")
    missing = admin_api.post(f"/api/v1/nodes/{node.pk}/revoke-credentials/", {}, format="json")
    revoked = admin_api.post(f"/api/v1/nodes/{node.pk}/revoke-credentials/", {"reason": "stolen"}, format="json")
    again = admin_api.post(f"/api/v1/nodes/{node.pk}/revoke-credentials/", {"reason": "stolen"}, format="json")

    assert (refused.status_code, missing.status_code) == (403, 400)
    assert revoked.json() == {"revoked": 1}
    assert again.json() == {"revoked": 0}
    assert NodeCredential.objects.get().revoke_reason == "stolen"
    assert AuditEvent.objects.filter(verb="revoke_credentials").count() == 1
