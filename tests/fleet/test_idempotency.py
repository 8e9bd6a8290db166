"""`Idempotency-Key` on creating POSTs: a retry replays the first answer instead of creating twice."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from sites.models import Site
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

SITE = {"code": "TX-0412", "name": "Austin", "region": "us-south", "timezone": "America/Chicago"}


@pytest.fixture
def client() -> APIClient:
    user = UserFactory(username="integration", is_superuser=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
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
    other.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=other_user).key}")

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
