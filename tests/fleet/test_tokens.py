"""Integration tokens: issued at auth/token/ or by staff in the admin, revoked in the admin, all audited."""

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from fleet.audit.models import AuditEvent
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_first_token_issue_is_audited_once(api: APIClient) -> None:
    user = UserFactory(username="integration")
    user.set_password("correct horse battery")
    user.save()

    first = api.post("/api/v1/auth/token/", {"username": "integration", "password": "correct horse battery"})
    second = api.post("/api/v1/auth/token/", {"username": "integration", "password": "correct horse battery"})

    assert first.json()["token"] == second.json()["token"]
    assert AuditEvent.objects.filter(verb="issue_token", actor_repr="integration").count() == 1


def test_staff_issue_and_revoke_tokens_in_the_admin(admin_user: object) -> None:
    staff = Client()
    staff.force_login(admin_user)  # type: ignore[arg-type]
    integration = UserFactory(username="pos-sync")

    added = staff.post("/admin/authtoken/tokenproxy/add/", {"user": integration.pk})
    assert added.status_code == 302
    token = Token.objects.get(user=integration)
    assert staff.get("/admin/authtoken/tokenproxy/").status_code == 200

    deleted = staff.post(f"/admin/authtoken/tokenproxy/{integration.pk}/delete/", {"post": "yes"})

    assert deleted.status_code == 302
    assert not Token.objects.filter(key=token.key).exists()
    verbs = list(AuditEvent.objects.filter(actor_repr="root").values_list("verb", flat=True))
    assert sorted(verbs) == ["issue_token", "revoke_token"]
