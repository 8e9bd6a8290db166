"""Bootstrap tokens for staff: issue (shown once) for named machines or, with a permission, for any machine
of a site; list (never the secret), revoke; permissions; admin."""

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from fleet.audit.models import AuditEvent
from sites import devices
from sites.choices import NodeState
from sites.crypto import hash_secret
from sites.models import BootstrapToken
from tests.factories import NodeFactory, SiteFactory, UserFactory

pytestmark = pytest.mark.django_db


def _url(code: str, suffix: str = "") -> str:
    return f"/api/v1/sites/{code}/bootstrap-tokens/{suffix}"


def _site_awaiting(*serials: str, **site: Any) -> Any:
    """A site with machines pre-registered (waiting to register), so a token can be issued for them."""
    place = SiteFactory(**site)
    for serial in serials or ("SN-WAIT-1",):
        NodeFactory(serial=serial, site=place, state=NodeState.PREREGISTERED)
    return place


def test_issue_shows_the_token_once_and_stores_only_its_hash(admin_api: APIClient) -> None:
    site = _site_awaiting(code="TX-0412")

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
    site = _site_awaiting()

    admin_api.post(_url(site.code), {}, format="json")

    days = (BootstrapToken.objects.get().expires_at - timezone.now()).total_seconds() / 86400
    assert 6.99 < days <= 7


@pytest.mark.parametrize("hours", [0, -1, 24 * 30 + 1, "soon"])
def test_lifetime_out_of_range_is_400(admin_api: APIClient, hours: object) -> None:
    site = _site_awaiting()

    response = admin_api.post(_url(site.code), {"lifetime_hours": hours}, format="json")

    assert response.status_code == 400
    assert "lifetime_hours" in response.json()
    assert not BootstrapToken.objects.exists()


def test_service_refuses_lifetime_out_of_range() -> None:
    import datetime as dt

    from fleet.errors import Invalid

    with pytest.raises(Invalid, match="between 1 and 720 hours"):
        devices.bootstrap_token_issue(site=_site_awaiting(), actor="t", source="t", lifetime=dt.timedelta(days=31))


def test_read_only_user_cannot_issue_or_revoke(readonly_api: APIClient) -> None:
    site = _site_awaiting()
    token, _plain = devices.bootstrap_token_issue(site=site, actor="t", source="t")

    assert readonly_api.post(_url(site.code), {}, format="json").status_code == 403
    assert readonly_api.post(_url(site.code, f"{token.pk}/revoke/")).status_code == 403
    assert readonly_api.delete(_url(site.code, f"{token.pk}/")).status_code == 403
    assert BootstrapToken.objects.count() == 1
    token.refresh_from_db()
    assert token.revoked_at is None


def test_dedicated_permissions_allow_issue_and_revoke() -> None:
    site = _site_awaiting()
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
    site = _site_awaiting()
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
    mine, other = SiteFactory(), _site_awaiting()
    token, _plain = devices.bootstrap_token_issue(site=other, actor="t", source="t")

    assert admin_api.post(_url(mine.code, f"{token.pk}/revoke/")).status_code == 404
    assert admin_api.get(_url("ZZ-9999")).status_code == 404


def test_decommissioned_site_gets_no_tokens(admin_api: APIClient) -> None:
    site = _site_awaiting(state="decommissioned")

    response = admin_api.post(_url(site.code), {}, format="json")

    assert response.status_code == 409
    assert "decommissioned" in response.json()["detail"]


# --- which machines a token is for ---------------------------------------------------------------------


def test_a_token_is_for_the_machines_waiting_to_register_by_default(admin_api: APIClient) -> None:
    site = _site_awaiting("SN-B", "SN-A")
    NodeFactory(serial="SN-WIPED", site=site, state=NodeState.WIPED)
    NodeFactory(serial="SN-LIVE", site=site, state=NodeState.ACTIVE)
    NodeFactory(serial="SN-ELSEWHERE", state=NodeState.PREREGISTERED)

    response = admin_api.post(_url(site.code), {}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["serials"] == ["SN-A", "SN-B", "SN-WIPED"]
    assert response.json()["any_serial"] is False
    listed = admin_api.get(_url(site.code)).json()["results"][0]
    assert (listed["serials"], listed["refusals"], listed["quarantines"]) == (["SN-A", "SN-B", "SN-WIPED"], 0, 0)
    event = AuditEvent.objects.get(verb="issue_bootstrap_token")
    assert event.payload["serials"] == ["SN-A", "SN-B", "SN-WIPED"]


def test_a_token_for_named_machines(admin_api: APIClient) -> None:
    site = _site_awaiting("SN-A", "SN-B")

    response = admin_api.post(_url(site.code), {"serials": ["SN-B", " SN-B "], "note": "box 7"}, format="json")

    assert response.status_code == 201, response.content
    assert BootstrapToken.objects.get().serials == ["SN-B"]


def test_a_site_with_no_machine_waiting_gets_no_default_token(admin_api: APIClient) -> None:
    site = SiteFactory(code="TX-0412")
    NodeFactory(site=site, state=NodeState.ACTIVE)

    response = admin_api.post(_url(site.code), {}, format="json")

    assert response.status_code == 400
    assert "no machine waiting to register" in response.json()["serials"][0]
    assert not BootstrapToken.objects.exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"serials": ["SN-OTHER"]}, "is not a machine of site"),
        ({"serials": ["SN-NOBODY"]}, "is not a machine of site"),
        ({"serials": ["SN-OLD"]}, "retired"),
        ({"serials": []}, "empty"),
        ({"serials": ["SN-A"], "any_serial": True}, "not both"),
        ({"serials": "SN-A"}, "list"),
        ({"serials": ["x" * 65]}, "no more than 64"),
    ],
    ids=["other-site", "unknown", "retired", "empty", "both", "not-a-list", "too-long"],
)
def test_serials_that_are_not_the_site_s_machines_are_400(admin_api: APIClient, body: dict, message: str) -> None:
    site = _site_awaiting("SN-A")
    NodeFactory(serial="SN-OLD", site=site, state=NodeState.RETIRED)
    NodeFactory(serial="SN-OTHER", state=NodeState.PREREGISTERED)

    response = admin_api.post(_url(site.code), body, format="json")

    assert response.status_code == 400
    assert "serials" in response.json()
    assert message in str(response.json()["serials"]).lower() or message in response.json()["detail"]
    assert not BootstrapToken.objects.exists()


def test_a_site_wide_token_needs_its_own_permission() -> None:
    site = _site_awaiting()
    client = APIClient()
    client.force_authenticate(
        UserFactory(username="provisioner", perms=["sites.view_bootstraptoken", "sites.add_bootstraptoken"])
    )

    refused = client.post(_url(site.code), {"any_serial": True}, format="json")
    bound = client.post(_url(site.code), {}, format="json")

    assert refused.status_code == 403
    assert "sites.issue_any_serial_bootstraptoken" in refused.json()["detail"]
    assert bound.status_code == 201
    assert BootstrapToken.objects.get().any_serial is False


def test_a_site_wide_token_with_the_permission(admin_api: APIClient) -> None:
    site = SiteFactory()  # no machine pre-registered: a site-wide token needs none

    response = admin_api.post(_url(site.code), {"any_serial": True}, format="json")

    assert response.status_code == 201, response.content
    assert (response.json()["any_serial"], response.json()["serials"]) == (True, [])
    assert AuditEvent.objects.get(verb="issue_bootstrap_token").payload["any_serial"] is True


# --- admin ------------------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def test_admin_action_issues_a_token_and_shows_it_once(admin_client: Client) -> None:
    site = _site_awaiting("SN-BOX-7", code="TX-0412")

    response = admin_client.post(
        "/admin/sites/site/",
        {"action": "issue_bootstrap_tokens", "_selected_action": [site.pk]},
        follow=True,
    )

    assert response.status_code == 200
    token = BootstrapToken.objects.get(site=site)
    shown = [str(m) for m in response.context["messages"]]
    assert any(token.prefix in m and "not shown again" in m and "SN-BOX-7" in m for m in shown)
    assert (token.serials, token.any_serial) == (["SN-BOX-7"], False)
    plaintext = next(m for m in shown if token.prefix in m).split("bootstrap token ")[1].split(" ")[0]
    assert hash_secret(plaintext) == token.token_hash
    again = admin_client.get(f"/admin/sites/bootstraptoken/{token.pk}/change/")
    assert plaintext not in again.content.decode()


def test_admin_lists_tokens_by_state_and_revokes(admin_client: Client) -> None:
    site = _site_awaiting()
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


def test_admin_site_wide_action_needs_the_permission(admin_client: Client) -> None:
    site = SiteFactory(code="TX-0413")
    staff = UserFactory(
        username="desk", is_staff=True, perms=["sites.view_site", "sites.change_site", "sites.add_bootstraptoken"]
    )
    desk = Client()
    desk.force_login(staff)

    refused = desk.post(
        "/admin/sites/site/", {"action": "issue_site_wide_bootstrap_tokens", "_selected_action": [site.pk]}
    )
    assert refused.status_code in (200, 302)
    assert not BootstrapToken.objects.exists()  # the action is not offered to someone without the permission

    allowed = admin_client.post(
        "/admin/sites/site/",
        {"action": "issue_site_wide_bootstrap_tokens", "_selected_action": [site.pk]},
        follow=True,
    )

    assert allowed.status_code == 200
    token = BootstrapToken.objects.get(site=site)
    assert token.any_serial is True
    assert any("any machine of the site" in str(m) for m in allowed.context["messages"])


def test_admin_action_on_a_site_with_no_machine_waiting_says_why(admin_client: Client) -> None:
    site = SiteFactory(code="TX-0414")

    response = admin_client.post(
        "/admin/sites/site/", {"action": "issue_bootstrap_tokens", "_selected_action": [site.pk]}, follow=True
    )

    assert response.status_code == 200
    assert any("no machine waiting to register" in str(m) for m in response.context["messages"])
    assert not BootstrapToken.objects.exists()
