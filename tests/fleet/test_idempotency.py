"""`Idempotency-Key` on creating POSTs: a retry replays the first answer instead of creating twice, except
that an answer holding a secret is never stored nor replayed; expired records are ignored and purged."""

import datetime as dt
import json

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from fleet.api.models import IdempotencyRecord
from fleet.api.tasks import purge_idempotency_records_task
from sites.choices import NodeState
from sites.models import BootstrapToken, Site
from tests.factories import NodeFactory, SiteFactory, UserFactory, api_key_for

pytestmark = pytest.mark.django_db

SITE = {"code": "TX-0412", "name": "Austin", "region": "us-south", "timezone": "America/Chicago"}


@pytest.fixture
def client() -> APIClient:
    user = UserFactory(username="integration", is_superuser=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_key_for(user)}")
    return client


def test_retry_with_the_same_key_replays_the_first_answer(client: APIClient) -> None:
    first = client.post("/api/v1/sites/", SITE, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = client.post("/api/v1/sites/", SITE, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert first.status_code == 201
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Site.objects.count() == 1


def test_same_key_with_a_different_body_is_422(client: APIClient) -> None:
    client.post("/api/v1/sites/", SITE, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    other = client.post("/api/v1/sites/", {**SITE, "code": "TX-0413"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert other.status_code == 422
    assert "different request" in other.json()["detail"]
    assert not Site.objects.filter(code="TX-0413").exists()


def test_a_failed_request_stores_nothing_so_a_corrected_retry_works(client: APIClient) -> None:
    bad = client.post("/api/v1/sites/", {**SITE, "timezone": "Nowhere"}, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    fixed = client.post("/api/v1/sites/", SITE, format="json", HTTP_IDEMPOTENCY_KEY="k-2")

    assert bad.status_code == 400
    assert fixed.status_code == 201


def test_keys_are_per_client(client: APIClient) -> None:
    other_user = UserFactory(username="other", is_superuser=True)
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Token {api_key_for(other_user)}")

    client.post("/api/v1/sites/", SITE, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    second = other.post("/api/v1/sites/", {**SITE, "code": "TX-0413"}, format="json", HTTP_IDEMPOTENCY_KEY="shared")

    assert second.status_code == 201
    assert Site.objects.count() == 2


def test_an_overlong_key_is_400(client: APIClient) -> None:
    response = client.post("/api/v1/sites/", SITE, format="json", HTTP_IDEMPOTENCY_KEY="x" * 300)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["detail"]


def test_a_retry_while_the_first_request_runs_is_409(client: APIClient) -> None:
    from fleet.api.idempotency import request_fingerprint, request_principal
    from fleet.api.models import IdempotencyRecord

    # Given the first request with this key has started and not finished (no stored answer yet)
    request = client.post("/api/v1/sites/", SITE, format="json", HTTP_IDEMPOTENCY_KEY="warm-up").wsgi_request
    IdempotencyRecord.objects.create(
        principal=request_principal(request), key="k-3", fingerprint=request_fingerprint(request)
    )

    response = client.post("/api/v1/sites/", SITE, format="json", HTTP_IDEMPOTENCY_KEY="k-3")

    assert response.status_code == 409
    assert "still in progress" in response.json()["detail"]


def _stored_bytes() -> bytes:
    """Every column of every Idempotency-Key record, as the database holds them."""
    return b"\n".join(
        bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
        for row in IdempotencyRecord.objects.values_list()
        for value in row
    )


def test_a_retried_bootstrap_token_issue_never_gets_the_token_back_and_nothing_stores_it(client: APIClient) -> None:
    site = SiteFactory()
    NodeFactory(site=site, state=NodeState.PREREGISTERED)  # a machine the token is for
    url = f"/api/v1/sites/{site.code}/bootstrap-tokens/"

    first = client.post(url, {"note": "unboxing"}, format="json", HTTP_IDEMPOTENCY_KEY="boot-1")
    again = client.post(url, {"note": "unboxing"}, format="json", HTTP_IDEMPOTENCY_KEY="boot-1")

    assert first.status_code == 201
    token = first.json()["token"]
    # The retry says what happened and which object, without the secret, and issues nothing new
    assert again.status_code == 409
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == str(first.json()["id"]) and again.json()["status"] == 201
    assert token not in again.content.decode()
    assert BootstrapToken.objects.count() == 1
    # And the record holds the status and the id, no body
    record = IdempotencyRecord.objects.get(key="boot-1")
    assert (record.status_code, record.withheld, record.resource_id) == (201, True, str(first.json()["id"]))
    assert bytes(record.body) == b""
    assert token.encode() not in _stored_bytes()


def test_an_issued_api_key_is_never_stored_with_its_idempotency_key(client: APIClient) -> None:
    user = UserFactory(username="login-with-key")
    user.set_password("correct horse battery")
    user.save()
    # A session or token client may send a key to auth/token/ too
    body = {"username": "login-with-key", "password": "correct horse battery"}

    first = client.post("/api/v1/auth/token/", body, format="json", HTTP_IDEMPOTENCY_KEY="login-1")
    again = client.post("/api/v1/auth/token/", body, format="json", HTTP_IDEMPOTENCY_KEY="login-1")

    assert first.status_code == 200
    assert again.status_code == 409 and first.json()["token"] not in again.content.decode()
    assert first.json()["token"].encode() not in _stored_bytes()


def test_any_answer_with_a_secret_field_is_withheld_even_unmarked() -> None:
    from django.http import JsonResponse

    from fleet.api.idempotency import _store

    record = IdempotencyRecord.objects.create(principal="p", key="k", fingerprint="f")
    response = JsonResponse({"id": 7, "nested": {"node_token": "efn_secret"}, "labels": {"key": "fine"}}, status=201)

    _store(record, response)

    record.refresh_from_db()
    assert (record.withheld, record.resource_id, bytes(record.body)) == (True, "7", b"")


def test_a_label_named_key_is_not_mistaken_for_a_secret(client: APIClient) -> None:
    first = client.post("/api/v1/sites/", {**SITE, "labels": {"key": "v"}}, format="json", HTTP_IDEMPOTENCY_KEY="l-1")
    again = client.post("/api/v1/sites/", {**SITE, "labels": {"key": "v"}}, format="json", HTTP_IDEMPOTENCY_KEY="l-1")

    assert first.status_code == 201, first.content
    assert again.status_code == 201 and json.loads(again.content) == first.json()


def test_an_expired_record_is_not_replayed_and_beat_purges_it(client: APIClient, settings: object) -> None:
    settings.FLEET_IDEMPOTENCY_HOURS = 1  # type: ignore[attr-defined]
    client.post("/api/v1/sites/", SITE, format="json", HTTP_IDEMPOTENCY_KEY="old")
    client.post("/api/v1/sites/", {**SITE, "code": "TX-0499"}, format="json", HTTP_IDEMPOTENCY_KEY="fresh")
    IdempotencyRecord.objects.filter(key="old").update(created_at=timezone.now() - dt.timedelta(hours=2))

    # A key past its lifetime is a new request (here: a different body, which a live key refuses with 422)
    reused = client.post("/api/v1/sites/", {**SITE, "code": "TX-0500"}, format="json", HTTP_IDEMPOTENCY_KEY="old")
    assert reused.status_code == 201
    IdempotencyRecord.objects.filter(key="old").update(created_at=timezone.now() - dt.timedelta(hours=2))

    assert purge_idempotency_records_task() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["fresh"]


def test_the_purge_runs_on_the_beat_schedule(settings: object) -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["api-purge-idempotency-records"]  # type: ignore[attr-defined]
    assert entry["task"] == purge_idempotency_records_task.name
    assert entry["schedule"] <= 3600
