"""The sites, clusters and nodes API: shapes, permissions, filtering, and every bad input's answer."""

import pytest
from rest_framework.test import APIClient

from fleet.audit.models import AuditEvent
from sites.choices import NodeState, SiteState
from sites.models import Cluster, Node, Site
from tests.factories import NodeFactory, SiteFactory, UserFactory
from tests.sites.pki import kubeconfig

pytestmark = pytest.mark.django_db

NEW_SITE = {"code": "TX-0412", "name": "Austin Lamar", "region": "us-south", "timezone": "America/Chicago"}
KUBECONFIG = kubeconfig("https://10.1.2.3:6443")


# --- authentication and permissions -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/sites/", "/api/v1/nodes/", "/api/v1/audit-events/"])
def test_anonymous_requests_are_401(api: APIClient, path: str) -> None:
    response = api.get(path)
    assert response.status_code == 401
    assert response.json()["detail"]


def test_read_only_user_can_read_but_not_write(readonly_api: APIClient) -> None:
    site = SiteFactory()

    assert readonly_api.get("/api/v1/sites/").status_code == 200
    assert readonly_api.get(f"/api/v1/sites/{site.code}/").status_code == 200
    assert readonly_api.post("/api/v1/sites/", NEW_SITE, format="json").status_code == 403
    assert readonly_api.patch(f"/api/v1/sites/{site.code}/", {"name": "x"}, format="json").status_code == 403
    assert readonly_api.put(f"/api/v1/sites/{site.code}/cluster/", {}, format="json").status_code == 403
    assert readonly_api.post(f"/api/v1/sites/{site.code}/probe/").status_code == 403
    assert readonly_api.post("/api/v1/nodes/", {}, format="json").status_code == 403
    assert not Site.objects.filter(code=NEW_SITE["code"]).exists()


def test_user_without_view_permission_sees_nothing() -> None:
    client = APIClient()
    client.force_authenticate(UserFactory(username="nobody"))
    assert client.get("/api/v1/sites/").status_code == 403


def test_token_from_auth_endpoint_authenticates(api: APIClient) -> None:
    user = UserFactory(username="integration", perms=["sites.view_site"])
    user.set_password("correct horse battery")
    user.save()

    bad = api.post("/api/v1/auth/token/", {"username": "integration", "password": "wrong"}, format="json")
    good = api.post("/api/v1/auth/token/", {"username": "integration", "password": "correct horse battery"})

    assert bad.status_code == 400
    assert good.status_code == 200
    api.credentials(HTTP_AUTHORIZATION=f"Token {good.json()['token']}")
    assert api.get("/api/v1/sites/").status_code == 200


# --- sites --------------------------------------------------------------------------------------------


def test_create_site_is_audited_and_gets_a_cluster(admin_api: APIClient) -> None:
    response = admin_api.post("/api/v1/sites/", {**NEW_SITE, "labels": {"tier": "pilot"}}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["code"] == "TX-0412"
    assert body["state"] == SiteState.PLANNED
    assert body["cluster"]["has_credentials"] is False
    assert Cluster.objects.filter(site__code="TX-0412").exists()
    event = AuditEvent.objects.get(verb="create", object_type="sites.site")
    assert event.actor_repr == "root"
    assert event.source == "api"


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"timezone": "America/Springfield"}, "timezone", "not an IANA time zone"),
        ({"labels": {"tier": "has space"}}, "labels", "invalid value"),
        ({"labels": ["tier"]}, "labels", "must be an object"),
        ({"code": "texas-12"}, "code", "not a site code"),
        ({"maintenance_windows": [{"start": "2am", "end": "4am"}]}, "maintenance_windows", "is not a time"),
        ({"name": ""}, "name", "blank"),
    ],
)
def test_bad_site_input_is_400_naming_the_field(admin_api: APIClient, change: dict, field: str, message: str) -> None:
    response = admin_api.post("/api/v1/sites/", {**NEW_SITE, **change}, format="json")

    assert response.status_code == 400, response.content
    assert message in str(response.json()[field])
    assert response.json()["detail"]
    assert not Site.objects.exists()
    assert not AuditEvent.objects.exists()


def test_duplicate_site_code_is_400(admin_api: APIClient) -> None:
    SiteFactory(code="TX-0412")

    response = admin_api.post("/api/v1/sites/", NEW_SITE, format="json")

    assert response.status_code == 400
    assert "already exists" in response.json()["code"][0]


def test_illegal_site_state_change_is_409_and_names_the_state(admin_api: APIClient) -> None:
    site = SiteFactory(state=SiteState.DECOMMISSIONED)

    response = admin_api.patch(f"/api/v1/sites/{site.code}/", {"state": "active"}, format="json")

    assert response.status_code == 409
    assert "decommissioned" in response.json()["detail"]


def test_site_update_records_the_changes(admin_api: APIClient) -> None:
    site = SiteFactory(name="Old")

    response = admin_api.patch(f"/api/v1/sites/{site.code}/", {"name": "New", "region": "us-west"}, format="json")

    assert response.status_code == 200
    event = AuditEvent.objects.get(verb="update")
    assert event.payload["changes"] == {"name": ["Old", "New"], "region": ["us-south", "us-west"]}


def test_site_with_nodes_cannot_be_deleted(admin_api: APIClient) -> None:
    node = NodeFactory()

    response = admin_api.delete(f"/api/v1/sites/{node.site.code}/")

    assert response.status_code == 409
    assert "decommission" in response.json()["detail"]


def test_site_list_filters(admin_api: APIClient) -> None:
    a = SiteFactory(region="us-south", labels={"tier": "pilot"})
    SiteFactory(region="us-west", labels={"tier": "main"})
    SiteFactory(region="us-south", state=SiteState.OFFLINE)

    def codes(query: str) -> list[str]:
        response = admin_api.get(f"/api/v1/sites/?{query}")
        assert response.status_code == 200, response.content
        return [s["code"] for s in response.json()["results"]]

    assert codes("labels=tier%3Dpilot") == [a.code]
    assert codes("region=us-south&state=active") == [a.code]
    assert len(codes("region=us-south")) == 2
    assert admin_api.get("/api/v1/sites/?labels=tier+in+(").status_code == 400


def test_site_list_is_cursor_paginated_with_constant_queries(
    admin_api: APIClient, django_assert_max_num_queries: object
) -> None:
    for _ in range(30):
        NodeFactory()

    with django_assert_max_num_queries(6):  # type: ignore[operator]
        first = admin_api.get("/api/v1/sites/?page_size=20").json()
    second = admin_api.get(first["next"]).json()

    assert len(first["results"]) == 20
    assert len(second["results"]) == 10
    assert first["results"][0]["node_count"] == 1
    assert not {s["code"] for s in first["results"]} & {s["code"] for s in second["results"]}


# --- nodes ---------------------------------------------------------------------------------------------


def _node_body(target: Site, **extra: str) -> dict[str, str]:
    return {
        "serial": "NUC-0001",
        "site": target.code,
        "role": "server",
        "hostname": "tx-0412-a",
        "mac": "52-54-00-AB-CD-EF",
        "hardware_model": "NUC 13 Pro",
        **extra,
    }


def test_preregister_node(admin_api: APIClient) -> None:
    site = SiteFactory()

    response = admin_api.post("/api/v1/nodes/", _node_body(site), format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["state"] == NodeState.PREREGISTERED
    assert body["mac"] == "52:54:00:ab:cd:ef"
    assert body["site"] == site.code


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"mac": "52:54:00:zz:00:01"}, "mac", "not a MAC address"),
        ({"site": "ZZ-9999"}, "site", "no site has code ZZ-9999"),
        ({"role": "master"}, "role", "not a valid choice"),
        ({"hostname": "Bad_Host"}, "hostname", "not a valid hostname"),
        ({"state": "active"}, "state", "always pre-registered"),
    ],
)
def test_bad_node_input_is_400_naming_the_field(admin_api: APIClient, change: dict, field: str, message: str) -> None:
    site = SiteFactory()

    response = admin_api.post("/api/v1/nodes/", _node_body(site, **change), format="json")

    assert response.status_code == 400, response.content
    assert message in str(response.json()[field])
    assert not Node.objects.exists()


def test_duplicate_serial_and_mac_are_400(admin_api: APIClient) -> None:
    site = SiteFactory()
    assert admin_api.post("/api/v1/nodes/", _node_body(site), format="json").status_code == 201

    same_serial = admin_api.post("/api/v1/nodes/", _node_body(site, hostname="other"), format="json")
    same_mac = admin_api.post("/api/v1/nodes/", _node_body(site, serial="NUC-0002", hostname="other"), format="json")

    assert same_serial.status_code == 400
    assert "serial NUC-0001 already exists" in same_serial.json()["serial"][0]
    assert same_mac.status_code == 400
    assert "MAC" in same_mac.json()["mac"][0]
    assert Node.objects.count() == 1


def test_illegal_node_state_change_is_409(admin_api: APIClient) -> None:
    node = NodeFactory(state=NodeState.RETIRED)

    response = admin_api.patch(f"/api/v1/nodes/{node.pk}/", {"state": "active"}, format="json")

    assert response.status_code == 409
    assert "retired; it cannot become active" in response.json()["detail"]
    node.refresh_from_db()
    assert node.state == NodeState.RETIRED


def test_node_filters(admin_api: APIClient) -> None:
    a = NodeFactory(state=NodeState.BROKEN)
    NodeFactory(state=NodeState.ACTIVE)

    response = admin_api.get(f"/api/v1/nodes/?state=broken&site={a.site.code}")

    assert [n["serial"] for n in response.json()["results"]] == [a.serial]


def test_malformed_json_is_400_not_500(admin_api: APIClient) -> None:
    response = admin_api.generic("POST", "/api/v1/sites/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


# --- audit events ------------------------------------------------------------------------------------


def test_audit_events_are_listed_and_read_only(admin_api: APIClient) -> None:
    admin_api.post("/api/v1/sites/", NEW_SITE, format="json")

    listing = admin_api.get("/api/v1/audit-events/?verb=create")

    assert listing.status_code == 200
    assert listing.json()["results"][0]["object_repr"] == "TX-0412"
    event_id = listing.json()["results"][0]["id"]
    assert admin_api.delete(f"/api/v1/audit-events/{event_id}/").status_code == 405
    assert admin_api.post("/api/v1/audit-events/", {}, format="json").status_code == 405


def test_schema_and_docs_are_served(admin_api: APIClient) -> None:
    schema = admin_api.get("/api/schema/")  # a login is needed: tests/fleet/test_schema.py
    assert schema.status_code == 200
    assert b"/api/v1/sites/{code}/probe/" in schema.content
    docs = admin_api.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content
    assert b"cdn" not in docs.content.lower()
