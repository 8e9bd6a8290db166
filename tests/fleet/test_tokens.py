"""Integration tokens: stored as hashes, shown once, expiring, revocable in the admin and the API, audited.

Each test tries what a holder of a database dump, a stale key or someone else's key id would try."""

import datetime as dt
import importlib
from types import SimpleNamespace
from typing import Any

import pytest
from django.apps import apps
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from fleet.api.models import ApiToken
from fleet.api.tokens import hash_key
from fleet.audit.models import AuditEvent
from tests.factories import UserFactory, api_key_for

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"  # noqa: S105 - a test user's password


@pytest.fixture
def integration() -> Any:
    user = UserFactory(username="integration", perms=["sites.view_site"])
    user.set_password(PASSWORD)
    user.save()
    return user


def _client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def _all_stored_text() -> str:
    """Every value of every column of the tables a key could leak into."""
    rows = [*ApiToken.objects.values_list(), *AuditEvent.objects.values_list()]
    return "\n".join(str(value) for row in rows for value in row)


def test_auth_token_issues_a_key_that_works_and_only_its_hash_is_stored(api: APIClient, integration: Any) -> None:
    response = api.post("/api/v1/auth/token/", {"username": "integration", "password": PASSWORD}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    key = body["token"]
    assert key.startswith("eft_") and len(key) > 40
    assert body["expires_at"] and body["prefix"] == key[:12]
    token = ApiToken.objects.get(pk=body["id"])
    assert token.key_hash == hash_key(key)
    assert key not in _all_stored_text()  # not in any column, nor in the audit payload
    assert _client(key).get("/api/v1/sites/").status_code == 200


def test_each_login_issues_a_new_key_and_each_is_audited(api: APIClient, integration: Any) -> None:
    first = api.post("/api/v1/auth/token/", {"username": "integration", "password": PASSWORD}).json()["token"]
    second = api.post("/api/v1/auth/token/", {"username": "integration", "password": PASSWORD}).json()["token"]

    assert first != second
    assert _client(first).get("/api/v1/sites/").status_code == 200
    assert _client(second).get("/api/v1/sites/").status_code == 200
    assert AuditEvent.objects.filter(verb="issue_token", actor_repr="integration").count() == 2


def test_a_wrong_password_gets_no_key(api: APIClient, integration: Any) -> None:
    response = api.post("/api/v1/auth/token/", {"username": "integration", "password": "guess"}, format="json")

    assert response.status_code == 400
    assert "unable to log in" in response.json()["detail"]
    assert not ApiToken.objects.exists()


def test_default_lifetime_comes_from_the_setting(integration: Any, settings: Any) -> None:
    settings.FLEET_API_TOKEN_TTL_DAYS = 7
    api_key_for(integration)
    days = (ApiToken.objects.get().expires_at - timezone.now()).total_seconds() / 86400
    assert 6.99 < days <= 7


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda t: ApiToken.objects.filter(pk=t.pk).update(expires_at=timezone.now()), "expired"),
        (lambda t: ApiToken.objects.filter(pk=t.pk).update(revoked_at=timezone.now()), "revoked"),
        (lambda t: type(t.user).objects.filter(pk=t.user_id).update(is_active=False), "inactive"),
    ],
    ids=["expired", "revoked", "inactive-user"],
)
def test_an_expired_revoked_or_orphaned_key_is_401(integration: Any, spoil: Any, message: str) -> None:
    key = api_key_for(integration)
    client = _client(key)
    assert client.get("/api/v1/sites/").status_code == 200

    spoil(ApiToken.objects.get())
    response = client.get("/api/v1/sites/")

    assert response.status_code == 401
    assert message in response.json()["detail"]


def test_an_unknown_or_plaintext_hash_is_401(integration: Any) -> None:
    key = api_key_for(integration)
    # A database dump gives the hash; the hash is not a key.
    assert _client(hash_key(key)).get("/api/v1/sites/").status_code == 401
    assert _client("eft_" + "x" * 43).get("/api/v1/sites/").status_code == 401


def test_last_use_is_recorded_at_most_once_a_minute(integration: Any) -> None:
    key = api_key_for(integration)
    client = _client(key)
    assert ApiToken.objects.get().last_used_at is None

    client.get("/api/v1/sites/")
    first = ApiToken.objects.get().last_used_at
    assert first is not None and timezone.now() - first < dt.timedelta(seconds=5)

    recent = timezone.now() - dt.timedelta(seconds=30)
    ApiToken.objects.update(last_used_at=recent)
    client.get("/api/v1/sites/")
    assert ApiToken.objects.get().last_used_at == recent  # within the minute: no write

    ApiToken.objects.update(last_used_at=timezone.now() - dt.timedelta(minutes=2))
    client.get("/api/v1/sites/")
    assert timezone.now() - ApiToken.objects.get().last_used_at < dt.timedelta(seconds=5)  # type: ignore[operator]


def test_a_user_lists_and_revokes_their_own_keys_and_nobody_elses(integration: Any) -> None:
    key = api_key_for(integration, name="pos-sync")
    other_key = api_key_for(UserFactory(username="other"))
    other_token = ApiToken.objects.get(user__username="other")
    client = _client(key)

    listed = client.get("/api/v1/auth/tokens/").json()["results"]
    assert [(t["name"], t["state"], t["prefix"]) for t in listed] == [("pos-sync", "active", key[:12])]
    assert "token" not in listed[0] and "key_hash" not in listed[0]

    assert client.delete(f"/api/v1/auth/tokens/{other_token.pk}/").status_code == 404
    assert _client(other_key).get("/api/v1/auth/tokens/").status_code == 200  # still works

    own = ApiToken.objects.get(user=integration)
    assert client.delete(f"/api/v1/auth/tokens/{own.pk}/").status_code == 204
    assert client.get("/api/v1/sites/").status_code == 401
    assert AuditEvent.objects.filter(verb="revoke_token", object_id=str(own.pk), source="api").count() == 1


def test_anonymous_cannot_list_tokens(api: APIClient) -> None:
    assert api.get("/api/v1/auth/tokens/").status_code == 401


def test_staff_issue_a_key_shown_once_and_revoke_it_in_the_admin(admin_user: Any) -> None:
    staff = Client()
    staff.force_login(admin_user)
    integration = UserFactory(username="pos-sync")

    added = staff.post(
        "/admin/api/apitoken/add/", {"user": integration.pk, "name": "pos", "lifetime_days": 30}, follow=False
    )

    assert added.status_code == 200, added.content
    token = ApiToken.objects.get(user=integration)
    key = added.context["key"]
    assert key.startswith("eft_") and key in added.content.decode()
    assert "no-store" in added["Cache-Control"]
    assert token.key_hash == hash_key(key)
    assert 29.9 < (token.expires_at - timezone.now()).total_seconds() / 86400 <= 30
    listing = staff.get("/admin/api/apitoken/").content.decode()
    assert token.prefix in listing and key not in listing
    detail = staff.get(f"/admin/api/apitoken/{token.pk}/change/").content.decode()
    assert key not in detail and token.key_hash not in detail

    revoked = staff.post(
        "/admin/api/apitoken/", {"action": "revoke_tokens", "_selected_action": [token.pk]}, follow=True
    )

    assert revoked.status_code == 200
    token.refresh_from_db()
    assert token.revoked_at is not None and token.revoked_by == "root"
    assert _client(key).get("/api/v1/auth/tokens/").status_code == 401
    verbs = sorted(AuditEvent.objects.filter(actor_repr="root").values_list("verb", flat=True))
    assert verbs == ["issue_token", "revoke_token"]


def test_staff_cannot_mint_a_key_with_more_rights_than_their_own(db: None) -> None:
    # Given a staff member allowed to manage tokens, but not to wipe nodes
    clerk = UserFactory(username="clerk", is_staff=True, perms=["api.add_apitoken", "api.view_apitoken"])
    wiper = UserFactory(username="wiper", perms=["sites.wipe_node", "sites.view_node"])
    boss = UserFactory(username="boss", is_superuser=True)
    staff = Client()
    staff.force_login(clerk)

    for target in (wiper, boss):
        refused = staff.post("/admin/api/apitoken/add/", {"user": target.pk, "name": "x", "lifetime_days": 1})
        assert refused.status_code == 200 and "key" not in (refused.context or {}), target
        assert "a key for them would give you those" in refused.content.decode() or "superuser" in (
            refused.content.decode()
        )
    assert not ApiToken.objects.exists()
    # A user with no more rights than the clerk's is fine
    reader = UserFactory(username="reader", perms=["api.view_apitoken"])
    assert staff.post("/admin/api/apitoken/add/", {"user": reader.pk, "lifetime_days": 1}).context["key"]


def test_tokens_are_never_deleted_in_the_admin(admin_user: Any) -> None:
    staff = Client()
    staff.force_login(admin_user)
    api_key_for(admin_user)
    token = ApiToken.objects.get()

    assert staff.post(f"/admin/api/apitoken/{token.pk}/delete/", {"post": "yes"}).status_code == 403
    assert ApiToken.objects.filter(pk=token.pk).exists()


def test_existing_drf_tokens_are_hashed_in_place_and_the_plain_text_deleted(integration: Any) -> None:
    # Given the table DRF's authtoken app left behind, holding a key in plain text
    plaintext = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"
    with connection.cursor() as cursor:
        cursor.execute(
            'CREATE TABLE authtoken_token ("key" varchar(40) PRIMARY KEY, created timestamp, user_id integer)'
        )
        cursor.execute(
            'INSERT INTO authtoken_token ("key", created, user_id) VALUES (%s, %s, %s)',
            [plaintext, timezone.now(), integration.pk],
        )
    migration = importlib.import_module("fleet.api.migrations.0002_hashed_api_tokens")

    migration.hash_drf_tokens(apps, SimpleNamespace(connection=connection))

    # Then the integration's key still works, and no plain text is left
    assert _client(plaintext).get("/api/v1/sites/").status_code == 200
    assert ApiToken.objects.get().prefix == plaintext[:8]
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM authtoken_token")
        assert cursor.fetchone() == (0,)
    assert plaintext not in _all_stored_text()
