"""A plan's numbers, values and label selectors are bounded: a 400 naming the field on the way in, and a
driver that cannot be crashed by a number that got stored some other way."""

import datetime as dt
import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from fleet.errors import Invalid
from fleet.workflows import active_run
from fleet.workflows.outcomes import Done, Wait
from rollouts import services
from rollouts.models import Application, Release, Rollout, RolloutPlan, SiteRollout
from rollouts.planning import PLAN_NUMBER_RANGES, snapshot_number
from rollouts.workflows.driver import drive
from tests.factories import SiteFactory
from tests.rollouts.factories import TEMPLATES, ApplicationFactory, ReleaseFactory, RolloutPlanFactory

pytestmark = pytest.mark.django_db


def plan_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "name": "spring-menu",
        "release": ReleaseFactory().pk,
        "target": {"all": True},
        "waves": [{"percent": 100}],
        "failure_threshold": {"count": 0},
    }
    return {**body, **overrides}


def selector(terms: int) -> str:
    """`k0,k1,...`: each term asks for a label key to exist."""
    return ",".join(f"k{i}" for i in range(terms))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("site_deadline_seconds", 10**18, "must be at most 2592000"),
        ("site_deadline_seconds", 2**31, "must be at most 2592000"),  # past PostgreSQL's integer too
        ("site_deadline_seconds", 0, "must be at least 1"),
        ("bake_seconds", 10**18, "must be at most 2592000"),
        ("bake_seconds", -1, "must be at least 0"),
        ("max_parallel", 2**63, "must be at most 100000"),
        ("max_parallel", 0, "must be at least 1"),
    ],
)
def test_plan_numbers_out_of_range_are_400_naming_the_field(
    admin_api: APIClient, field: str, value: int, message: str
) -> None:
    SiteFactory()

    response = admin_api.post("/api/v1/rollout-plans/", plan_body(**{field: value}), format="json")

    assert response.status_code == 400, response.content
    assert response.json()[field] == [message]
    assert not RolloutPlan.objects.exists()


def test_plan_numbers_out_of_range_are_400_on_update_too(admin_api: APIClient) -> None:
    plan = RolloutPlanFactory()

    response = admin_api.patch(f"/api/v1/rollout-plans/{plan.pk}/", {"bake_seconds": 10**18}, format="json")

    assert response.status_code == 400, response.content
    assert "bake_seconds" in response.json()
    plan.refresh_from_db()
    assert plan.bake_seconds == 0


@pytest.mark.parametrize("field", sorted(PLAN_NUMBER_RANGES))
def test_services_refuse_plan_numbers_out_of_range(field: str) -> None:
    """The admin writes through the services: the same bounds hold there."""
    SiteFactory()
    release = ReleaseFactory()
    fields = {k: v for k, v in plan_body(release=release).items() if k != "release"}

    with pytest.raises(Invalid) as caught:
        services.rollout_plan_create(actor="t", source="test", release=release, **fields, **{field: 10**18})

    assert field in caught.value.errors


def test_a_driver_pass_survives_out_of_range_numbers_planted_in_a_snapshot() -> None:
    """A snapshot holding numbers no plan may have (written before the bounds, or by hand): the driver
    clamps them into range instead of failing with an OverflowError at every pass."""
    for _ in range(3):
        SiteFactory()
    rollout = services.rollout_start(
        plan=RolloutPlanFactory(waves=[{"percent": 100}], bake_seconds=60), actor="t", source="test"
    )
    planted = {"site_deadline_seconds": 10**18, "bake_seconds": 10**18, "max_parallel": 10**30}
    Rollout.objects.filter(pk=rollout.pk).update(plan_snapshot={**rollout.plan_snapshot, **planted})
    run = active_run(rollout)
    assert run is not None

    first = drive(run, {})
    started = list(SiteRollout.objects.filter(rollout=rollout).values_list("state", flat=True))
    # Started long ago: past the deadline as clamped (30 days), so the next pass skips them.
    SiteRollout.objects.filter(rollout=rollout).update(started_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    second = drive(run, {})

    assert isinstance(first, Wait) and isinstance(second, Wait | Done), (first, second)
    assert started == ["committing"] * 3  # max_parallel clamped to its range, not a LIMIT of 10**30
    assert list(SiteRollout.objects.filter(rollout=rollout).values_list("state", flat=True)) == ["skipped"] * 3


@pytest.mark.parametrize(
    ("value", "expected"),
    [(10**18, 30 * 86_400), (-5, 0), ("soon", 0), (float("nan"), 0), (float("inf"), 0), (True, 0)],
)
def test_snapshot_numbers_are_clamped_into_their_range(value: Any, expected: int) -> None:
    assert snapshot_number({"bake_seconds": value}, "bake_seconds", 0) == expected


def test_deep_release_values_are_400_naming_values(admin_api: APIClient) -> None:
    values: Any = 1
    for _ in range(800):
        values = {"v": values}
    body = {"application": ApplicationFactory().pk, "version": "1.0", "templates": TEMPLATES, "values": values}

    response = admin_api.post("/api/v1/releases/", json.dumps(body), content_type="application/json")

    assert response.status_code == 400, response.content
    assert "nested deeper than" in response.json()["values"][0]
    assert not Release.objects.exists()


def test_label_selector_of_800_terms_in_a_plan_target_is_400_naming_target(admin_api: APIClient) -> None:
    SiteFactory()

    response = admin_api.post("/api/v1/rollout-plans/", plan_body(target={"labels": selector(800)}), format="json")

    assert response.status_code == 400, response.content
    assert response.json()["target"] == ["a label selector has at most 50 terms, not 800"]
    assert not RolloutPlan.objects.exists()


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (selector(800), "at most 50 terms, not 800"),
        ("k in (" + ",".join(f"v{i}" for i in range(800)) + ")", "a set has at most 200 values, not 800"),
        ("k=" + "v" * 5000, "at most 4096 characters"),
    ],
)
def test_oversized_label_selector_in_the_site_list_is_400_naming_labels(
    admin_api: APIClient, labels: str, message: str
) -> None:
    SiteFactory(labels={"k": "v"})

    response = admin_api.get("/api/v1/sites/", {"labels": labels})

    assert response.status_code == 400, response.content
    assert message in response.json()["labels"][0]


def test_a_selector_within_the_bounds_still_selects(admin_api: APIClient) -> None:
    SiteFactory(labels={f"k{i}": "v" for i in range(50)})
    SiteFactory(labels={"k0": "v"})

    response = admin_api.get("/api/v1/sites/", {"labels": selector(50)})

    assert response.status_code == 200, response.content
    assert len(response.json()["results"]) == 1


def test_target_listing_too_many_sites_is_400_naming_target(admin_api: APIClient) -> None:
    codes = [f"TX-{i:05d}" for i in range(20_001)]

    response = admin_api.post("/api/v1/rollout-plans/", plan_body(target={"sites": codes}), format="json")

    assert response.status_code == 400, response.content
    assert "more than 20000 sites" in response.json()["target"][0]


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("namespace", "system-upgrade", "system-upgrade"),
        ("namespace", "kube-system", "kube-system"),
        ("extra_namespaces", ["flux-system"], "flux-system"),
        ("name", "k3s", "platform application"),
        ("name", "base-stack", "platform application"),
    ],
)
def test_people_cannot_claim_the_platforms_namespaces_or_names(
    planner_api: Any, field: str, value: Any, named: str
) -> None:
    """An application in system-upgrade could write a Plan, which runs a privileged Job on every machine
    of every site; in flux-system it could point the GitOps agent elsewhere."""
    body = {"name": "payments-x", "team": "payments", "namespace": "payments", field: value}
    answer = planner_api.post("/api/v1/applications/", body, format="json")
    assert answer.status_code == 400, answer.content
    assert named in str(answer.json()[field])
    assert not Application.objects.exists()


def test_an_existing_application_cannot_move_into_a_platform_namespace(admin_api: Any) -> None:
    """Not even a superuser: the platform's namespaces are edgefleet's own to write."""
    created = admin_api.post(
        "/api/v1/applications/", {"name": "pos", "team": "payments", "namespace": "pos"}, format="json"
    )
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    moved = admin_api.patch(f"/api/v1/applications/{pk}/", {"extra_namespaces": ["system-upgrade"]}, format="json")
    assert moved.status_code == 400 and "system-upgrade" in str(moved.json()["extra_namespaces"])
    assert Application.objects.get(name="pos").extra_namespaces == []
