"""Input the API cannot use gets a 400 (or a 404 for a path that names nothing), never a 500.

Each test sends one of the inputs that made a 500 before (deep JSON, values PostgreSQL cannot store,
numbers and times beyond what a filter's column compares, malformed ids in paths, `null` in a form)
to the layer that now refuses it for every endpoint: the JSON parser, the JSON serializer field, the
FilterSet base, the router. Run them on PostgreSQL too: several only failed there.
"""

import datetime as dt
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from django.urls import URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from fleet.api.filters import FleetFilterSet
from fleet.api.parsers import FleetFormParser, FleetJSONParser, FleetMultiPartParser
from fleet.api.urls import router
from fleet.errors import Invalid
from rollouts import services
from rollouts.models import Application, Release
from sites import devices
from tests.factories import NodeFactory
from tests.rollouts.factories import TEMPLATES, ApplicationFactory, ReleaseFactory, RolloutPlanFactory

pytestmark = pytest.mark.django_db

DEEP = "[" * 100_000


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


def post_raw(client: APIClient, url: str, body: str) -> Any:
    return client.post(url, body, content_type="application/json")


# --- the JSON parser -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["/api/v1/device/register/", "/api/v1/auth/token/", "/api/v1/releases/", "/api/v1/applications/"]
)
def test_json_nested_100000_deep_is_400(admin_api: APIClient, api: APIClient, url: str) -> None:
    client = admin_api if url.endswith(("releases/", "applications/")) else api  # the others are unauthenticated

    response = post_raw(client, url, DEEP)

    assert response.status_code == 400, response.content
    assert "nested deeper than 32 levels" in response.json()["detail"]


def test_deep_value_in_a_json_body_is_400_naming_the_field(admin_api: APIClient) -> None:
    body = {"application": ApplicationFactory().pk, "version": "1.0", "templates": TEMPLATES, "values": nested(800)}

    response = post_raw(admin_api, "/api/v1/releases/", json.dumps(body))

    assert response.status_code == 400, response.content
    assert "nested deeper than 32 levels" in response.json()["values"][0]
    assert response.json()["detail"].startswith("values:")
    assert not Release.objects.exists()


@pytest.mark.parametrize(
    ("raw_value", "reason"),
    [
        ('"a\\u0000b"', "NUL character"),
        ('"\\ud800"', "unpaired surrogate"),
        ("1e400", "out of range"),
        ('{"k\\u0000": 1}', "a key contains a NUL character"),
    ],
)
def test_values_postgresql_cannot_store_are_400_naming_the_field(
    admin_api: APIClient, raw_value: str, reason: str
) -> None:
    application = ApplicationFactory()
    body = (
        f'{{"application": {application.pk}, "version": "1.0", "templates": {json.dumps(TEMPLATES)}, '
        f'"values": {{"greeting": {raw_value}}}}}'
    )

    response = post_raw(admin_api, "/api/v1/releases/", body)

    assert response.status_code == 400, response.content
    assert reason in response.json()["values"][0]
    assert not Release.objects.exists()


def test_body_over_the_upload_limit_is_400(admin_api: APIClient, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = json.dumps({"name": "pos", "team": "store", "namespace": "pos", "description": "x" * 20_000})

    response = post_raw(admin_api, "/api/v1/applications/", body)

    assert response.status_code == 400, response.content
    assert "too large" in response.json()["detail"]
    assert not Application.objects.exists()


def test_device_heartbeat_parser_checks_depth_too(api: APIClient) -> None:
    _credential, token = devices.node_credentials_issue(node=NodeFactory(), actor="test", source="test")
    api.credentials(HTTP_AUTHORIZATION=f"Node {token}")
    body = '{"versions": ' + "[" * 5000 + "]" * 5000 + ', "backups": []}'

    response = post_raw(api, "/api/v1/device/heartbeat/", body)

    assert response.status_code == 400, response.content
    assert "nested deeper than 32 levels" in response.json()["detail"]


def test_every_api_view_parses_with_the_bounded_parsers() -> None:
    """A view that lists its own parsers (DRF's ObtainAuthToken does) must not bring back DRF's plain ones."""
    views = []
    pending = list(get_resolver().url_patterns)
    while pending:
        pattern = pending.pop()
        if isinstance(pattern, URLResolver):
            pending.extend(pattern.url_patterns)
        elif hasattr(pattern.callback, "cls"):
            views.append(pattern.callback.cls)
    assert len(views) > 20
    ours = (FleetJSONParser, FleetFormParser, FleetMultiPartParser)
    for view in views:
        assert all(issubclass(parser, ours) for parser in view.parser_classes), view


# --- forms ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("form_format", ["multipart", "urlencoded"])
def test_nul_in_a_form_field_is_400_naming_the_field(admin_api: APIClient, form_format: str) -> None:
    """`site` is looked up in the database: PostgreSQL cannot compare a string holding NUL (it was a 500)."""
    form = {"serial": "SN1", "site": "\x00J", "hostname": "n1", "mac": "52:54:00:12:34:56", "role": "server"}

    if form_format == "multipart":
        response = admin_api.post("/api/v1/nodes/", form, format="multipart")
    else:
        response = admin_api.post("/api/v1/nodes/", urlencode(form), content_type="application/x-www-form-urlencoded")

    assert response.status_code == 400, response.content
    assert response.json()["site"] == ["contains a NUL character"]


# --- JSON in a form field ------------------------------------------------------------------------


def test_null_json_in_a_multipart_form_is_400_naming_the_field(admin_api: APIClient) -> None:
    form = {
        "name": "pos",
        "team": "store",
        "namespace": "pos",
        "extra_namespaces": "null",
        "allowed_cluster_kinds": "null",
    }

    response = admin_api.post("/api/v1/applications/", form, format="multipart")

    assert response.status_code == 400, response.content
    assert response.json()["extra_namespaces"] == ["This field may not be null."]
    assert response.json()["allowed_cluster_kinds"] == ["This field may not be null."]
    assert not Application.objects.exists()


@pytest.mark.parametrize("depth", [100, 5000])
def test_deep_json_in_a_form_field_is_400_naming_the_field(admin_api: APIClient, depth: int) -> None:
    form = {"application": ApplicationFactory().pk, "version": "1.0", "templates": json.dumps(TEMPLATES)}
    form["values"] = json.dumps(nested(depth)) if depth < 1000 else "[" * depth + "]" * depth

    response = admin_api.post("/api/v1/releases/", form, format="multipart")

    assert response.status_code == 400, response.content
    assert "nested deeper than 32 levels" in response.json()["values"][0]


def test_a_service_refuses_null_for_a_json_field_too() -> None:
    """The admin's JSON form fields also decode `null`: the service says which field, not a TypeError."""
    with pytest.raises(Invalid) as caught:
        services.application_create(
            actor="t", source="test", name="pos", team="s", namespace="pos", extra_namespaces=None
        )

    assert caught.value.errors == {"extra_namespaces": ["extra_namespaces: may not be null"]}


# --- filters -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/v1/rollout-plans/?application=2914030552443218649035901510097043456", "application"),
        ("/api/v1/rollouts/?application=-9223372036854775809", "application"),
        ("/api/v1/rollouts/?application=0.5", "application"),
        ("/api/v1/rollouts/?release=100000000000000000000000000000", "release"),
        ("/api/v1/releases/?application=100000000000000000000000000000", "application"),
        ("/api/v1/nodes/?seen_after=0001-01-01T00:00:00%2B05:00", "seen_after"),
        ("/api/v1/audit-events/?since=9999-12-31T23:59:59-05:00", "since"),
    ],
)
def test_filter_values_no_column_can_compare_are_400_naming_the_filter(
    admin_api: APIClient, url: str, field: str
) -> None:
    response = admin_api.get(url)

    assert response.status_code == 400, response.content
    assert field in response.json()


def test_wave_filter_beyond_64_bits_is_400(admin_api: APIClient) -> None:
    rollout = services.rollout_start(plan=_plan_with_a_site(), actor="t", source="test")

    response = admin_api.get(f"/api/v1/rollouts/{rollout.pk}/sites/?wave=99999999999999999999999")

    assert response.status_code == 400, response.content
    assert "wave" in response.json()


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/drift/?checked_before=0220-12-22T11:31:10.936%2B19:16",
        "/api/v1/nodes/?seen_after=0446-11-21T14:46:25.37467-18:03",
        "/api/v1/rollouts/?started_after=2025-03-01T06:00:00%2B23:59",
    ],
)
def test_times_with_offsets_postgresql_refuses_are_compared_in_utc(admin_api: APIClient, url: str) -> None:
    response = admin_api.get(url)

    assert response.status_code == 200, response.content


def test_time_filters_still_filter(admin_api: APIClient) -> None:
    NodeFactory(last_seen_at=dt.datetime(2025, 3, 1, 12, tzinfo=dt.UTC))

    # 13:30+02:00 is 11:30 UTC: the node was seen after it, and not after 12:30 UTC.
    after = admin_api.get("/api/v1/nodes/?seen_after=2025-03-01T13:30:00%2B02:00").json()["results"]
    later = admin_api.get("/api/v1/nodes/?seen_after=2025-03-01T14:30:00%2B02:00").json()["results"]

    assert len(after) == 1 and later == []


def test_every_filterset_of_the_api_is_a_fleet_filterset() -> None:
    for _prefix, viewset, _basename in router.registry:
        filterset_class = getattr(viewset, "filterset_class", None)
        if filterset_class is not None:
            assert issubclass(filterset_class, FleetFilterSet), viewset


# --- paths ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/rollouts/null%2Cnull/sites/",
        "/api/v1/rollouts/null,null/",
        "/api/v1/rollout-plans/1e3/dry-run/",
        "/api/v1/nodes/-1/",
        "/api/v1/workflow-runs/99999999999999999999999/",
        "/api/v1/applications/%00/",
    ],
)
def test_a_malformed_id_in_a_path_is_a_json_404(admin_api: APIClient, path: str) -> None:
    response = admin_api.get(path)

    assert response.status_code == 404, response.content
    assert response.json()["detail"]


def test_well_formed_ids_and_codes_still_route(admin_api: APIClient) -> None:
    plan = RolloutPlanFactory()
    node = NodeFactory()

    assert admin_api.get(f"/api/v1/rollout-plans/{plan.pk}/").status_code == 200
    assert admin_api.get(f"/api/v1/nodes/{node.pk}/").status_code == 200
    assert admin_api.get(f"/api/v1/sites/{node.site.code}/").status_code == 200
    assert admin_api.get(f"/api/v1/sites/{node.site.code}/bootstrap-tokens/").status_code == 200
    assert admin_api.get("/api/v1/nodes/999999999999999999/").status_code == 404


def test_the_schema_still_types_ids_as_integers() -> None:
    """The digits-only route pattern does not turn `{id}` into a string parameter in the OpenAPI schema."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    ids = [
        parameter["schema"]
        for operations in schema["paths"].values()
        for operation in operations.values()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path" and parameter["name"] == "id"
    ]
    assert len(ids) > 20
    assert all(id_schema["type"] == "integer" for id_schema in ids), ids


def _plan_with_a_site() -> Any:
    NodeFactory()
    return RolloutPlanFactory(release=ReleaseFactory(), respect_windows=False)
