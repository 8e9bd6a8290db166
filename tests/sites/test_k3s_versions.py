"""The K3s version policy: parsing, what an upgrade may not do (skip a minor, downgrade), the fleet's
version distribution and the sites behind the target through the API, and a K3s rollout plan refused
with a 400 naming the field."""

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from rollouts.k3s import k3s_release
from rollouts.models import RolloutPlan
from sites.k3s_versions import K3sVersion, upgrade_problem
from sites.models import Cluster
from tests.factories import SiteFactory

OLDER, OLD, NEW = "v1.29.12+k3s1", "v1.30.8+k3s1", "v1.31.4+k3s1"


def test_versions_parse_as_k3s_writes_them() -> None:
    assert K3sVersion.parse("v1.31.4+k3s1") == K3sVersion(1, 31, 4, 1) == K3sVersion.parse("v1.31.4-k3s1")
    assert K3sVersion.parse("1.31.4") == K3sVersion(1, 31, 4, 0)
    assert K3sVersion.parse("latest") is None and K3sVersion.parse("") is None
    assert K3sVersion.parse(OLD) < K3sVersion.parse(NEW)  # type: ignore[operator]
    assert K3sVersion(1, 29, 0).minors_behind(K3sVersion(1, 31, 4)) == 2


def test_an_upgrade_goes_one_minor_at_a_time_and_never_back() -> None:
    assert upgrade_problem(OLD, NEW) == "" and upgrade_problem(NEW, NEW) == ""
    assert upgrade_problem("v1.31.2+k3s1", NEW) == ""
    assert "would skip v1.30; K3s upgrades one minor version at a time" in upgrade_problem(OLDER, NEW)
    assert "upgrade it to the newest v1.30 first" in upgrade_problem(OLDER, NEW)
    assert "K3s is not downgraded" in upgrade_problem(NEW, OLD)
    assert "not known yet" in upgrade_problem("", NEW)
    assert "not a K3s version" in upgrade_problem(OLD, "latest")


def fleet(versions: dict[str, str]) -> None:
    for code, version in versions.items():
        site = SiteFactory(code=code, region="us-east" if code.startswith("NY") else "us-south")
        Cluster.objects.filter(site=site).update(k3s_version=version)


@pytest.mark.django_db
def test_the_api_shows_the_distribution_and_the_sites_behind(admin_api: APIClient, settings: Any) -> None:
    settings.FLEET_K3S_TARGET_VERSION = NEW
    fleet({"TX-0001": NEW, "TX-0002": OLD, "TX-0003": OLDER, "NY-0004": OLDER, "TX-0005": ""})

    body = admin_api.get("/api/v1/k3s-versions/").json()

    assert body["target"] == NEW and body["allowed_minor_skew"] == 1
    assert [(d["version"], d["sites"], d["minors_behind"], d["flagged"]) for d in body["distribution"]] == [
        (NEW, 1, 0, False),
        (OLD, 1, 1, False),
        (OLDER, 2, 2, True),
        ("", 1, None, False),
    ]
    assert [(s["code"], s["minors_behind"], s["flagged"]) for s in body["behind"]] == [
        ("TX-0005", None, False),
        ("NY-0004", 2, True),
        ("TX-0003", 2, True),
        ("TX-0002", 1, False),
    ]
    flagged = admin_api.get("/api/v1/k3s-versions/?flagged=true&region=us-south").json()
    assert [s["code"] for s in flagged["behind"]] == ["TX-0003"] and flagged["behind_count"] == 1
    assert [d["sites"] for d in flagged["distribution"]] == [1, 1, 1, 1]
    refused = admin_api.get("/api/v1/k3s-versions/?flagged=maybe")
    assert refused.status_code == 400 and "flagged" in refused.json()
    assert admin_api.get("/api/v1/k3s-versions/?limit=0").status_code == 400


@pytest.mark.django_db
def test_the_versions_need_the_view_permission(api: APIClient) -> None:
    assert api.get("/api/v1/k3s-versions/").status_code in (401, 403)


@pytest.mark.django_db
def test_a_k3s_plan_that_would_skip_a_minor_version_is_a_400_naming_the_release(admin_api: APIClient) -> None:
    fleet({"TX-0001": OLD, "TX-0002": OLDER, "TX-0003": NEW})
    release = k3s_release(NEW, actor="test", source="test")
    body = {
        "name": "k3s",
        "release": release.pk,
        "target": {"all": True},
        "waves": [{"percent": 100}],
        "failure_threshold": {"count": 0},
        "auto_rollback": False,
    }

    response = admin_api.post("/api/v1/rollout-plans/", body, format="json")

    assert response.status_code == 400, response.content
    message = str(response.json()["release"])
    assert "TX-0002: it runs v1.29.12+k3s1: going to v1.31.4+k3s1 would skip v1.30" in message
    assert "TX-0001" not in message and "TX-0003" not in message
    rolled_back = admin_api.post(
        "/api/v1/rollout-plans/", {**body, "target": {"sites": ["TX-0001"]}, "auto_rollback": True}, format="json"
    )
    assert rolled_back.status_code == 400 and "not rolled back" in str(rolled_back.json()["auto_rollback"])
    assert not RolloutPlan.objects.exists()
    accepted = admin_api.post("/api/v1/rollout-plans/", {**body, "target": {"sites": ["TX-0001"]}}, format="json")
    assert accepted.status_code == 201, accepted.content
    assert accepted.json()["respect_windows"] is True  # upgrades wait for each site's maintenance window
    assert release.application.name == "k3s" and release.application.namespace == "system-upgrade"


@pytest.mark.django_db
def test_a_k3s_release_must_be_a_k3s_version(admin_api: APIClient) -> None:
    application = k3s_release(NEW, actor="test", source="test").application
    body = {"application": application.pk, "version": "spring-menu", "templates": {"a.yaml": "kind: x"}}
    response = admin_api.post("/api/v1/releases/", body, format="json")
    assert response.status_code == 400 and "not a K3s version" in str(response.json()["version"])


@pytest.mark.django_db
def test_the_admin_site_list_filters_by_version_and_marks_the_flagged(client: Any, admin_user: Any) -> None:
    fleet({"TX-0001": NEW, "TX-0002": OLD, "TX-0003": OLDER})
    client.force_login(admin_user)

    page = client.get("/admin/sites/site/?k3s=flagged").content.decode()
    assert "TX-0003" in page and "TX-0002" not in page and "TX-0001" not in page
    assert "v1.29.12+k3s1 ⚑" in page  # the flagged site's version, marked
    assert f"{OLDER}: 1 site(s) ⚑" in page and f"{OLD}: 1 site(s)" in page  # the distribution as choices
    behind = client.get("/admin/sites/site/?k3s=behind").content.decode()
    assert "TX-0002" in behind and "TX-0003" in behind and "TX-0001" not in behind
    exact = client.get("/admin/sites/site/", {"k3s": NEW}).content.decode()
    assert "TX-0001" in exact and "TX-0002" not in exact


@pytest.mark.django_db
def test_a_k3s_release_runs_only_the_k3s_upgrade_image(admin_api: APIClient) -> None:
    release = k3s_release(NEW, actor="test", source="test")
    plans = release.templates["plans.yaml"]
    for image in ("evil.example/miner:1", "{{ values.image }}", "rancher/k3s-upgrade-fork"):
        body = {
            "application": release.application.pk,
            "version": "v1.31.5+k3s1",
            "templates": {"plans.yaml": plans.replace("image: rancher/k3s-upgrade", f"image: {image}", 1)},
        }
        response = admin_api.post("/api/v1/releases/", body, format="json")
        assert response.status_code == 400, image
        assert "is not allowed in a K3s release" in str(response.json()["templates"])
    tagged = {"plans.yaml": plans.replace("image: rancher/k3s-upgrade", "image: rancher/k3s-upgrade:v1.31.5-k3s1")}
    body = {"application": release.application.pk, "version": "v1.31.5+k3s1", "templates": tagged}
    assert admin_api.post("/api/v1/releases/", body, format="json").status_code == 201


@pytest.mark.django_db
def test_the_sites_behind_are_read_a_page_at_a_time_and_counted_from_the_distribution(
    admin_api: APIClient, settings: Any
) -> None:
    settings.FLEET_K3S_TARGET_VERSION = NEW
    fleet({f"TX-{i:04d}": (NEW, OLD, OLDER)[i % 3] for i in range(12)})

    with CaptureQueriesContext(connection) as captured:
        body = admin_api.get("/api/v1/k3s-versions/?limit=3").json()

    assert body["behind_count"] == 8
    assert [(s["code"], s["minors_behind"]) for s in body["behind"]] == [("TX-0002", 2), ("TX-0005", 2), ("TX-0008", 2)]
    sites = [q["sql"] for q in captured.captured_queries if 'FROM "sites_site"' in q["sql"] and "LIMIT" in q["sql"]]
    assert len(sites) == 1 and "LIMIT 3" in sites[0]  # the database limits the list: no row per site in Python
