"""The releases and rollouts API: shapes per DESIGN.md, every bad input's answer, permissions, query counts."""

from typing import Any

import pytest
from rest_framework.test import APIClient

from fleet.audit.models import AuditEvent
from fleet.workflows.models import WorkflowRun
from rollouts import services
from rollouts.models import Application, Release, Rollout, RolloutPlan, SiteRollout
from tests.factories import SiteFactory
from tests.rollouts.conftest import VIEW, client_for
from tests.rollouts.factories import TEMPLATES, VALUES, ApplicationFactory, ReleaseFactory, RolloutPlanFactory
from tests.rollouts.runs import run_to_end

pytestmark = pytest.mark.django_db

START = {"reason": "weekly release"}


def start(client: APIClient, plan: RolloutPlan) -> Any:
    return client.post(f"/api/v1/rollout-plans/{plan.pk}/start/", START, format="json")


def plan_body(release: Release, **overrides: object) -> dict:
    body = {
        "name": "spring-menu",
        "release": release.pk,
        "target": {"all": True},
        "waves": [{"name": "canary", "percent": 10}, {"percent": 100}],
        "max_parallel": 5,
        "failure_threshold": {"percent": 10},
        "bake_seconds": 600,
        "require_approval": True,
        "two_person_rule": True,
        "respect_windows": False,
        "auto_rollback": True,
        "start_at": None,
        "cron": None,
    }
    body.update(overrides)
    return body


# --- applications and releases ----------------------------------------------------------------------


def test_create_application_and_release(admin_api: APIClient) -> None:
    app = admin_api.post(
        "/api/v1/applications/",
        {"name": "pos", "team": "store", "namespace": "pos", "stateful": True, "extra_namespaces": ["pos-data"]},
        format="json",
    )
    assert app.status_code == 201, app.content
    assert app.json()["stateful"] is True

    release = admin_api.post(
        "/api/v1/releases/",
        {"application": app.json()["id"], "version": "1.4.2", "templates": TEMPLATES, "values": VALUES},
        format="json",
    )
    assert release.status_code == 201, release.content
    body = release.json()
    assert body["version"] == "1.4.2" and body["locked"] is False and body["created_by"] == "root"
    assert set(body["templates"]) == set(TEMPLATES)


@pytest.mark.parametrize(
    ("templates", "message"),
    [
        ({"a.yaml": "{{ ''.__class__.__mro__ }}"}, "a.yaml: unsafe template: access to attribute '__class__'"),
        ({"a.yaml": "{{ cycler.__init__.__globals__ }}"}, "a.yaml: unsafe template"),
        ({"a.yaml": "key: [unclosed"}, "a.yaml: not valid YAML"),
        ({"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: x}\n"}, "document 0: metadata.name"),
        ({"a.yaml": "{% for %}"}, "a.yaml: line 1: template syntax error"),
        ("not an object", "must be a JSON object"),
    ],
)
def test_bad_release_is_400_naming_the_template_and_nothing_is_written(
    admin_api: APIClient, templates: object, message: str
) -> None:
    app = ApplicationFactory()
    response = admin_api.post(
        "/api/v1/releases/", {"application": app.pk, "version": "1.0", "templates": templates}, format="json"
    )
    assert response.status_code == 400, response.content
    assert message in response.json()["detail"]
    assert message in response.json()["templates"][0]
    assert not Release.objects.exists()
    assert not AuditEvent.objects.exists()


def test_editing_a_locked_release_is_409(admin_api: APIClient) -> None:
    SiteFactory()
    plan = RolloutPlanFactory()
    services.rollout_start(plan=plan, actor="t", source="test")

    response = admin_api.patch(f"/api/v1/releases/{plan.release_id}/", {"values": {"replicas": 3}}, format="json")

    assert response.status_code == 409
    assert "locked" in response.json()["detail"]
    assert admin_api.delete(f"/api/v1/releases/{plan.release_id}/").status_code == 409


# --- plans ------------------------------------------------------------------------------------------


def test_create_plan_per_the_contract(admin_api: APIClient) -> None:
    release = ReleaseFactory()
    response = admin_api.post("/api/v1/rollout-plans/", plan_body(release, cron="0 3 * * *"), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["waves"][0] == {"name": "canary", "percent": 10}
    assert body["cron"] == "0 3 * * *" and body["two_person_rule"] is True


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"waves": [{"percent": 10}]}, "waves", "do not cover the target"),
        ({"failure_threshold": {"percent": 101}}, "failure_threshold", "between 0 and 100"),
        ({"cron": "0 25 * * *"}, "cron", "not a cron expression"),
        ({"cron": "0 3 * * *", "timezone": "Nowhere/City"}, "timezone", "not an IANA time zone"),
        ({"max_parallel": 0}, "max_parallel", "at least 1"),
        ({"target": {"sites": ["QQ-0001"]}}, "target", "unknown site codes: QQ-0001"),
        ({"release": 999999}, "release", "object does not exist"),
        ({"progress_deadline_seconds": 0}, "progress_deadline_seconds", "must be at least 1"),
        ({"progress_deadline_seconds": "soon"}, "progress_deadline_seconds", "valid integer"),
        ({"min_success_seconds": -5}, "min_success_seconds", "must be at least 0"),
        ({"min_success_seconds": 30000}, "min_success_seconds", "must be shorter than site_deadline_seconds"),
        ({"allow_unreachable_waves": "perhaps"}, "allow_unreachable_waves", "valid boolean"),
    ],
)
def test_bad_plan_is_400_and_nothing_is_written(
    admin_api: APIClient, overrides: dict, field: str, message: str
) -> None:
    body = {**plan_body(ReleaseFactory()), **overrides}
    response = admin_api.post("/api/v1/rollout-plans/", body, format="json")
    assert response.status_code == 400, response.content
    assert message in str(response.json()[field])
    assert response.json()["detail"]
    assert not RolloutPlan.objects.exists()


def test_a_plan_with_health_gates_round_trips(admin_api: APIClient) -> None:
    body = plan_body(
        ReleaseFactory(), progress_deadline_seconds=300, min_success_seconds=60, allow_unreachable_waves=True
    )
    response = admin_api.post("/api/v1/rollout-plans/", body, format="json")
    assert response.status_code == 201, response.content
    got = response.json()
    assert (got["progress_deadline_seconds"], got["min_success_seconds"], got["allow_unreachable_waves"]) == (
        300,
        60,
        True,
    )
    # empty means each Deployment's own deadline; it is the default
    default = admin_api.post("/api/v1/rollout-plans/", plan_body(ReleaseFactory(), name="other"), format="json")
    assert (default.json()["progress_deadline_seconds"], default.json()["min_success_seconds"]) == (None, 0)


def test_dry_run_is_a_background_run_whose_result_get_shows_and_it_writes_nothing(admin_api: APIClient) -> None:
    for _ in range(10):
        SiteFactory()
    plan = RolloutPlanFactory()
    url = f"/api/v1/rollout-plans/{plan.pk}/dry-run/"

    none_yet = admin_api.get(url)
    post = admin_api.post(url, {"at": "2025-03-03T18:00:00Z"}, format="json")
    again = admin_api.post(url, {}, format="json")
    running = admin_api.get(url).json()
    run_to_end(post.json()["run"])
    done = admin_api.get(url)

    assert none_yet.status_code == 404 and "no dry run yet" in none_yet.json()["detail"]
    assert post.status_code == 202, post.content
    assert post.json()["state"] == running["state"] == "running" and post.json()["result"] is None
    assert again.status_code == 409 and "already" in again.json()["detail"]
    assert done.status_code == 200, done.content
    body = done.json()
    assert body["state"] == "succeeded" and body["error"] == ""
    assert body["progress"] == {"rendered": 10, "total": 10}
    assert body["at"].startswith("2025-03-03T18:00:00")
    assert [w["size"] for w in body["result"]["waves"]] == [1, 9]
    gates = body["result"]["gates"]
    assert (gates["progress_deadline_seconds"], gates["min_success_seconds"]) == (None, 0)
    assert gates["allow_unreachable_waves"] is False and gates["site_deadline_seconds"] == 6 * 3600
    assert not Rollout.objects.exists()
    assert Release.objects.get().locked_at is None


def test_a_viewer_sees_dry_runs_but_cannot_start_one(viewer_api: APIClient) -> None:
    SiteFactory()
    plan = RolloutPlanFactory()

    post = viewer_api.post(f"/api/v1/rollout-plans/{plan.pk}/dry-run/", {}, format="json")
    get = viewer_api.get(f"/api/v1/rollout-plans/{plan.pk}/dry-run/")

    assert post.status_code == 403 and "rollouts.add_dryrun" in post.json()["detail"]
    assert get.status_code == 404
    assert not WorkflowRun.objects.exists()


# --- start, rollouts, actions -------------------------------------------------------------------------


def test_start_answers_202_with_the_rollout_shape(admin_api: APIClient) -> None:
    sites = [SiteFactory() for _ in range(10)]
    plan = RolloutPlanFactory(waves=[{"name": "canary", "sites": [sites[3].code]}, {"percent": 50}, {"percent": 100}])

    response = admin_api.post(f"/api/v1/rollout-plans/{plan.pk}/start/", START, format="json")

    assert response.status_code == 202, response.content
    body = response.json()
    for key in (
        "id",
        "plan",
        "release",
        "state",
        "current_wave",
        "counts",
        "waves",
        "started_by",
        "started_at",
        "finished_at",
    ):
        assert key in body
    assert body["state"] == "running" and body["plan"] == plan.pk and body["release"] == plan.release_id
    assert body["counts"]["pending"] == 10 and body["counts"]["succeeded"] == 0
    assert [(w["index"], w["name"], w["size"]) for w in body["waves"]] == [
        (0, "canary", 1),
        (1, "wave 1", 4),
        (2, "wave 2", 5),
    ]
    assert body["waves"][0]["counts"]["pending"] == 1
    assert body["started_by"] == "root" and body["finished_at"] is None


def test_overlapping_start_is_409_naming_the_rollout(admin_api: APIClient) -> None:
    SiteFactory()
    release = ReleaseFactory()
    first = start(admin_api, RolloutPlanFactory(release=release)).json()

    response = start(admin_api, RolloutPlanFactory(release=release))

    assert response.status_code == 409
    assert f"rollout {first['id']}" in response.json()["detail"]
    assert Rollout.objects.count() == 1


def test_start_and_approve_need_their_own_permissions(planner_api: APIClient) -> None:
    SiteFactory()
    plan = RolloutPlanFactory(require_approval=True, waves=[{"count": 1}, {"percent": 100}])

    refused = planner_api.post(f"/api/v1/rollout-plans/{plan.pk}/start/", START, format="json")
    assert refused.status_code == 403
    assert not Rollout.objects.exists()

    starter = client_for("starter", [*VIEW, "rollouts.start_rollout"])
    rollout = starter.post(f"/api/v1/rollout-plans/{plan.pk}/start/", START, format="json").json()
    assert planner_api.post(f"/api/v1/rollouts/{rollout['id']}/approve/").status_code == 403
    assert starter.post(f"/api/v1/rollouts/{rollout['id']}/pause/").status_code == 403


def test_two_person_rule_over_the_api() -> None:
    SiteFactory()
    SiteFactory()
    plan = RolloutPlanFactory(require_approval=True, two_person_rule=True, waves=[{"count": 1}, {"percent": 100}])
    alice = client_for("alice", [*VIEW, "rollouts.start_rollout", "rollouts.approve_rollout"])
    bob = client_for("bob", [*VIEW, "rollouts.approve_rollout"])
    rollout_id = alice.post(f"/api/v1/rollout-plans/{plan.pk}/start/", START, format="json").json()["id"]

    early = bob.post(f"/api/v1/rollouts/{rollout_id}/approve/")
    assert early.status_code == 409 and "running" in early.json()["detail"]

    rollout = Rollout.objects.get(pk=rollout_id)
    services.rollout_wave_open(rollout=rollout, index=0, actor="workflow", source="workflow")
    services.rollout_wave_close(rollout=rollout, index=0, actor="workflow", source="workflow")
    services.rollout_transition(rollout=rollout, to="awaiting_approval", actor="workflow", source="workflow")

    own = alice.post(f"/api/v1/rollouts/{rollout_id}/approve/", {"reason": "looks good"}, format="json")
    assert own.status_code == 403 and "two-person rule" in own.json()["detail"]
    other = bob.post(f"/api/v1/rollouts/{rollout_id}/approve/", {"reason": "looks good"}, format="json")
    assert other.status_code == 200, other.content
    assert other.json()["state"] == "running" and other.json()["approved_by"] == "bob"
    assert other.json()["waves"][1]["approved_by"] == "bob"


def test_pause_resume_cancel_rollback_answers(admin_api: APIClient) -> None:
    SiteFactory()
    rollout_id = start(admin_api, RolloutPlanFactory()).json()["id"]
    url = f"/api/v1/rollouts/{rollout_id}"

    assert admin_api.post(f"{url}/resume/").status_code == 409
    assert admin_api.post(f"{url}/pause/", {"reason": "lunch rush"}, format="json").json()["state"] == "paused"
    assert admin_api.post(f"{url}/resume/").json()["state"] == "running"
    rollback = admin_api.post(f"{url}/rollback/", {"reason": "bad"}, format="json")
    assert rollback.status_code == 202 and rollback.json()["rollback_requested"] is True
    assert admin_api.post(f"{url}/rollback/", {"reason": "bad"}, format="json").status_code == 409
    cancelled = admin_api.post(f"{url}/cancel/", {"reason": "wrong release"}, format="json").json()
    assert cancelled["state"] == "cancelled" and cancelled["finished_at"]
    response = admin_api.post(f"{url}/pause/")
    assert response.status_code == 409 and "cancelled" in response.json()["detail"]
    verbs = set(AuditEvent.objects.filter(object_type="rollouts.rollout").values_list("verb", flat=True))
    assert {"start", "transition", "rollback"} <= verbs


def test_rollout_sites_list_filters_and_paginates(admin_api: APIClient) -> None:
    for _ in range(12):
        SiteFactory()
    rollout = services.rollout_start(
        plan=RolloutPlanFactory(waves=[{"count": 2}, {"percent": 100}]), actor="t", source="test"
    )
    row = SiteRollout.objects.filter(rollout=rollout).order_by("position").first()
    services.site_rollout_transition(site_rollout=row, to="committing", actor="w", source="workflow")
    services.site_rollout_transition(site_rollout=row, to="failed", actor="w", source="workflow", error="boom")

    page = admin_api.get(f"/api/v1/rollouts/{rollout.pk}/sites/?page_size=5").json()
    failed = admin_api.get(f"/api/v1/rollouts/{rollout.pk}/sites/?state=failed").json()
    assert "results" in failed, failed
    first_wave = admin_api.get(f"/api/v1/rollouts/{rollout.pk}/sites/?wave=0").json()

    assert len(page["results"]) == 5 and page["next"]
    second = admin_api.get(page["next"]).json()
    assert not {r["site"] for r in page["results"]} & {r["site"] for r in second["results"]}
    assert set(page["results"][0]) >= {
        "site",
        "wave",
        "state",
        "revision",
        "previous_revision",
        "error",
        "started_at",
        "finished_at",
    }
    assert [(r["site"], r["state"], r["error"]) for r in failed["results"]] == [(row.site.code, "failed", "boom")]
    other = SiteRollout.objects.filter(rollout=rollout).order_by("position")[1]
    services.site_rollout_transition(site_rollout=other, to="committing", actor="w", source="workflow")
    services.site_rollout_transition(
        site_rollout=other, to="skipped", actor="w", source="workflow", skip_reason="unreachable", error="offline"
    )
    unreachable = admin_api.get(f"/api/v1/rollouts/{rollout.pk}/sites/?skip_reason=unreachable").json()["results"]
    assert [(r["site"], r["state"], r["skip_reason"]) for r in unreachable] == [
        (other.site.code, "skipped", "unreachable")
    ]
    assert admin_api.get(f"/api/v1/rollouts/{rollout.pk}/sites/?skip_reason=bored").status_code == 400
    detail = admin_api.get(f"/api/v1/rollouts/{rollout.pk}/").json()
    assert detail["skipped"] == {"unreachable": 1, "not_started": 0, "cancelled": 0, "by_person": 0}
    assert detail["waves"][0]["skipped"] == {"unreachable": 1, "not_started": 0, "cancelled": 0, "by_person": 0}
    assert len(first_wave["results"]) == 2 and {r["wave"] for r in first_wave["results"]} == {0}
    assert admin_api.get(f"/api/v1/rollouts/{rollout.pk}/sites/?state=exploded").status_code == 400
    assert admin_api.get(f"/api/v1/rollouts/{rollout.pk}/").json()["counts"]["failed"] == 1


def test_rollout_list_is_a_constant_number_of_queries(
    admin_api: APIClient, django_assert_max_num_queries: object
) -> None:
    for _ in range(6):
        SiteFactory()
    for i in range(8):
        release = ReleaseFactory()
        rollout = services.rollout_start(
            plan=RolloutPlanFactory(release=release, waves=[{"count": 1}, {"count": 3}, {"percent": 100}]),
            actor="t",
            source="test",
        )
        if i % 2:
            services.rollout_cancel(rollout=rollout, actor="t", source="test")

    with django_assert_max_num_queries(6):  # type: ignore[operator]
        body = admin_api.get("/api/v1/rollouts/?page_size=20").json()

    assert len(body["results"]) == 8
    assert all(len(r["waves"]) == 3 for r in body["results"])
    assert admin_api.get("/api/v1/rollouts/?state=cancelled").json()["results"].__len__() == 4


@pytest.mark.parametrize(
    "path", ["/api/v1/applications/", "/api/v1/releases/", "/api/v1/rollout-plans/", "/api/v1/rollouts/"]
)
def test_lists_need_view_permissions(api: APIClient, viewer_api: APIClient, path: str) -> None:
    assert api.get(path).status_code == 401
    assert client_for("nobody", []).get(path).status_code == 403
    assert viewer_api.get(path).status_code == 200


def test_viewer_cannot_write(viewer_api: APIClient) -> None:
    response = viewer_api.post("/api/v1/applications/", {"name": "x", "team": "t", "namespace": "x"}, format="json")
    assert response.status_code == 403
    assert not Application.objects.exists()


def test_schema_renders(admin_api: APIClient) -> None:
    response = admin_api.get("/api/schema/")
    assert response.status_code == 200
    assert b"/api/v1/rollouts/{id}/sites/" in response.content
