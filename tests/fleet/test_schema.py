"""The OpenAPI schema is generated without warnings, so integrators' generated clients are clean; it and
its interactive docs map the whole API, so they answer only a logged-in user (session or token)."""

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from tests.factories import UserFactory, api_key_for


@pytest.mark.django_db
def test_schema_generates_without_warnings() -> None:
    out = StringIO()
    call_command("spectacular", "--fail-on-warn", "--validate", stdout=out, stderr=StringIO())
    assert "openapi: 3" in out.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_schema_and_docs_refuse_anonymous_clients(api: APIClient, path: str) -> None:
    response = api.get(path)

    assert response.status_code == 401
    assert b"/api/v1/sites/" not in response.content


@pytest.mark.django_db
def test_schema_answers_a_token_and_docs_a_session(admin_user: Any) -> None:
    # Any logged-in user: the schema is a map, and each endpoint still checks its own permissions.
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_key_for(UserFactory(username='reader'))}")
    schema = client.get("/api/schema/")
    assert schema.status_code == 200 and b"/api/v1/sites/" in schema.content
    assert b"tokenAuth" in schema.content  # the Token scheme is documented

    browser = Client()
    browser.force_login(admin_user)
    assert browser.get("/api/docs/").status_code == 200
