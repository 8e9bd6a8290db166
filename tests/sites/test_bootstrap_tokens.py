"""Bootstrap tokens for staff: issue (shown once), list (never the secret), revoke; permissions; admin."""

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from fleet.audit.models import AuditEvent
from sites import devices
from sites.crypto import hash_secret
from sites.models import BootstrapToken
from tests.factories import NodeFactory, SiteFactory, UserFactory

pytestmark = pytest.mark.django_db


def _url(code: str, suffix: str = "") -> str:
    return f"/api/v1/sites/{code}/bootstrap-tokens/{suffix}"


def test_issue_shows_the_token_once_and_stores_only_its_hash(admin_api: APIClient) -> None:
    site = SiteFactory(code="TX-0412")

    response = admin_api.post(_url(site.code), {"lifetime_hours": 48, "note": "box 7"}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) >= {"id", "token", "expires_at", "prefix"}
    assert body["token"].startswith(body["prefix"])
    token = BootstrapToken.objects.get()
    assert token.token_hash == hash_secret(body["token"])
    assert 47 * 3600 < (token.expires_at - timezone.now()).total_seconds() <= 48 * 3600
    listed = admin_api.get(_url(site.code))
    assert listed.status_code == 200
    assert body["token"] not in listed.content.decode()
    assert listed.json()["results"][0]["state"] == "active"
    event = AuditEvent.objects.get(verb="issue_bootstrap_token")
    assert body["token"] not in str(event.payload)


def test_default_lifetime_is_seven_days(admin_api: APIClient) -> None:
    site = SiteFactory()

    admin_api.post(_url(site.code), {}, format="json")

    days = (BootstrapToken.objects.get().expires_at - timezone.now()).total_seconds() / 86400
    assert 6.99 < days <= 7


@pytest.mark.parametrize("hours", [0, -1, 24 * 30 + 1, "soon"])
def test_lifetime_out_of_range_is_400(admin_api: APIClient, hours: object) -> None:
    site = SiteFactory()

    response = admin_api.post(_url(site.code), {"lifetime_hours": hours}, format="json")

    assert response.status_code == 400
    assert "lifetime_hours" in response.json()
    assert not BootstrapToken.objects.exists()


def test_service_refuses_lifetime_out_of_range() -> None:
    import datetime as dt

    from fleet.errors import Invalid

    with pytest.raises(Invalid, match="between 1 and 720 hours"):
        devices.bootstrap_token_issue(site=SiteFactory(), actor="t", source="t", lifetime=dt.timedelta(days=31))


def test_read_only_user_cannot_issue_or_revoke(readonly_api: APIClient) -> None:
    site = SiteFactory()
    token, _plain = devices.bootstrap_token_issue(site=site, actor="t", source="t")

    assert readonly_api.post(_url(site.code), {}, format="json").status_code == 403
    assert readonly_api.post(_url(site.code, f"{token.pk}/revoke/")).status_code == 403
    assert readonly_api.delete(_url(site.code, f"{token.pk}/")).status_code == 403
    assert BootstrapToken.objects.count() == 1
    token.refresh_from_db()
    assert token.revoked_at is None


def test_dedicated_permissions_allow_issue_and_revoke() -> None:
    site = SiteFactory()
    client = APIClient()
    client.force_authenticate(
        UserFactory(
            username="provisioner",
            perms=["sites.view_bootstraptoken", "sites.add_bootstraptoken", "sites.change_bootstraptoken"],
        )
    )

    issued = client.post(_url(site.code), {}, format="json")
    revoked = client.post(_url(site.code, f"{issued.json()['id']}/revoke/"))

    assert issued.status_code == 201
    assert revoked.status_code == 200, revoked.content
    assert revoked.json()["state"] == "revoked"
    assert revoked.json()["revoked_by"] == "provisioner"


def test_delete_revokes_and_revoking_a_used_token_is_409(admin_api: APIClient) -> None:
    site = SiteFactory()
    token, _plain = devices.bootstrap_token_issue(site=site, actor="t", source="t")
    used, _ = devices.bootstrap_token_issue(site=site, actor="t", source="t")
    BootstrapToken.objects.filter(pk=used.pk).update(used_at=timezone.now(), used_by=NodeFactory(site=site))

    deleted = admin_api.delete(_url(site.code, f"{token.pk}/"))
    refused = admin_api.post(_url(site.code, f"{used.pk}/revoke/"))

    assert deleted.status_code == 204
    token.refresh_from_db()
    assert token.state == "revoked"
    assert refused.status_code == 409
    assert "used" in refused.json()["detail"]


def test_tokens_of_another_site_are_not_reachable(admin_api: APIClient) -> None:
    mine, other = SiteFactory(), SiteFactory()
    token, _plain = devices.bootstrap_token_issue(site=other, actor="t", source="t")

    assert admin_api.post(_url(mine.code, f"{token.pk}/revoke/")).status_code == 404
    assert admin_api.get(_url("ZZ-9999")).status_code == 404


def test_decommissioned_site_gets_no_tokens(admin_api: APIClient) -> None:
    site = SiteFactory(state="decommissioned")

    response = admin_api.post(_url(site.code), {}, format="json")

    assert response.status_code == 409
    assert "decommissioned" in response.json()["detail"]


# --- admin ------------------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def test_admin_action_issues_a_token_and_shows_it_once(admin_client: Client) -> None:
    site = SiteFactory(code="TX-0412")

    response = admin_client.post(
        "/admin/sites/site/",
        {"action": "issue_bootstrap_tokens", "_selected_action": [site.pk]},
        follow=True,
    )

    assert response.status_code == 200
    token = BootstrapToken.objects.get(site=site)
    shown = [str(m) for m in response.context["messages"]]
    assert any(token.prefix in m and "not shown again" in m for m in shown)
    plaintext = next(m for m in shown if token.prefix in m).split("bootstrap token ")[1].split(" ")[0]
    assert hash_secret(plaintext) == token.token_hash
    again = admin_client.get(f"/admin/sites/bootstraptoken/{token.pk}/change/")
    assert plaintext not in again.content.decode()


def test_admin_lists_tokens_by_state_and_revokes(admin_client: Client) -> None:
    site = SiteFactory()
    active, _ = devices.bootstrap_token_issue(site=site, actor="t", source="t")
    expired, _ = devices.bootstrap_token_issue(site=site, actor="t", source="t")
    BootstrapToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now())

    listing = admin_client.get("/admin/sites/bootstraptoken/?state=expired")
    admin_client.post("/admin/sites/bootstraptoken/", {"action": "revoke", "_selected_action": [active.pk]})

    assert listing.status_code == 200
    assert expired.prefix in listing.content.decode()
    assert active.prefix not in listing.content.decode()
    active.refresh_from_db()
    assert active.state == "revoked"
