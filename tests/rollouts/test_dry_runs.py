"""Dry runs in the background (rollouts.dry_runs): bounded, cancellable, one per plan, shown when done.
The unit tests advance the run in this process; the integration tests use the real worker."""

from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from fleet.errors import Conflict, Forbidden
from fleet.workflows import engine
from fleet.workflows.models import StepRun, WorkflowRun
from fleet.workflows.services import workflow_cancel
from rollouts import dry_runs
from rollouts.models import DryRun, Release, Rollout
from tests.factories import SiteFactory, UserFactory
from tests.rollouts.conftest import VIEW, client_for, wait_sweeping
from tests.rollouts.factories import ReleaseFactory, RolloutPlanFactory
from tests.rollouts.runs import run_to_end
from tests.support.services import Worker

HEAD = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: {{ release.namespace }}\ndata:\n  a: '"
# About a tenth of a second of CPU per site, within every bound: 200 `in` tests over 100,000 items.
SLOW = "{% set big = range(10000)|list * 10 %}{% for i in range(200) %}{% if -1 in big %}{% endif %}{% endfor %}."


def templates(body: str) -> dict[str, str]:
    return {"a.yaml": HEAD + body + "'\n"}


@pytest.mark.django_db
def test_a_dry_run_renders_in_short_steps_and_reports_its_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dry_runs, "BATCH_SITES", 2)
    for _ in range(5):
        SiteFactory()

    dry_run = dry_runs.dry_run_start(plan=RolloutPlanFactory(), actor="t", source="test")
    run = run_to_end(dry_run.run_id)
    dry_run.refresh_from_db()

    assert run.state == "succeeded" and dry_run.state == "succeeded"
    # Two short render steps that waited (one timeline row, its polls counted), then the last one.
    renders = list(StepRun.objects.filter(run=run, step="render").values_list("state", "polls", "message"))
    assert renders == [("waiting", 2, "rendered 4 of 5 sites"), ("done", 1, "")]
    assert dry_run.rendered_sites == dry_run.total_sites == dry_run.result["target_size"] == 5
    assert not Rollout.objects.exists() and Release.objects.get().locked_at is None


@pytest.mark.django_db
def test_rendering_time_counts_against_the_release_limit_over_all_the_steps() -> None:
    for _ in range(3):
        SiteFactory()
    dry_run = dry_runs.dry_run_start(plan=RolloutPlanFactory(), actor="t", source="test")
    assert engine.advance(dry_run.run_id, worker_id="test") == "done"  # the plan step
    # As if earlier render steps had spent the whole of FLEET_RENDER_RELEASE_SECONDS already.
    run = WorkflowRun.objects.get(pk=dry_run.run_id)
    WorkflowRun.objects.filter(pk=run.pk).update(context={**run.context, "cursor": 1, "render_seconds": 20.0})

    run = run_to_end(run.pk)
    dry_run.refresh_from_db()

    assert run.state == dry_run.state == "failed"
    assert dry_run.error.startswith("rendering ")
    assert (
        "exceeded the 20 s limit for one release (FLEET_RENDER_RELEASE_SECONDS): it stopped at site " in dry_run.error
    )
    assert dry_run.error.endswith("after 1 site(s)")


@pytest.mark.django_db
def test_a_dry_run_is_cancelled_like_any_run_and_renders_nothing_more() -> None:
    for _ in range(3):
        SiteFactory()
    dry_run = dry_runs.dry_run_start(plan=RolloutPlanFactory(), actor="t", source="test")
    engine.advance(dry_run.run_id, worker_id="test")  # the plan step

    workflow_cancel(run=WorkflowRun.objects.get(pk=dry_run.run_id), actor="t", source="test", reason="enough")
    run = run_to_end(dry_run.run_id)
    dry_run.refresh_from_db()

    assert run.state == dry_run.state == "cancelled"
    assert dry_run.error == "cancelled: enough"
    assert dry_run.rendered_sites == 0


@pytest.mark.django_db
def test_one_dry_run_per_plan_and_a_few_in_all() -> None:
    SiteFactory()
    first, second = RolloutPlanFactory(), RolloutPlanFactory()
    running = dry_runs.dry_run_start(plan=first, actor="t", source="test")

    with pytest.raises(Conflict, match=f"dry run of plan {first.name} is already pending"):
        dry_runs.dry_run_start(plan=first, actor="t", source="test")
    with override_settings(FLEET_DRY_RUN_MAX_ACTIVE=1), pytest.raises(Conflict, match="1 dry runs are running"):
        dry_runs.dry_run_start(plan=second, actor="t", source="test")
    with pytest.raises(Forbidden, match="rollouts.add_dryrun"):
        dry_runs.dry_run_start(plan=second, actor=UserFactory(perms=VIEW), source="test")

    assert list(DryRun.objects.values_list("pk", flat=True)) == [running.pk]
    run_to_end(running.run_id)
    assert dry_runs.dry_run_start(plan=first, actor="t", source="test").state == "running"


@pytest.mark.django_db
def test_a_plan_that_cannot_start_fails_its_dry_run_saying_why() -> None:
    plan = RolloutPlanFactory()  # no site at all

    dry_run = dry_runs.dry_run_start(plan=plan, actor="t", source="test")
    run_to_end(dry_run.run_id)
    dry_run.refresh_from_db()

    assert dry_run.state == "failed" and dry_run.error == "the plan's target matches no site"


# --- with the real worker ---------------------------------------------------------------------------------


def dry_run_api(client: APIClient, plan_id: int) -> dict[str, Any]:
    response = client.get(f"/api/v1/rollout-plans/{plan_id}/dry-run/")
    assert response.status_code == 200, response.content
    return dict(response.json())


def ended(client: APIClient, plan_id: int) -> bool:
    return dry_run_api(client, plan_id)["state"] != "running"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_dry_run_in_the_background_with_a_real_worker(celery_worker: Worker) -> None:
    """The view-only user's old way to burn a worker: now a 202, a run on the worker, and its result."""
    sites = [SiteFactory(code=f"TX-{n:04d}") for n in range(1, 13)]
    good = RolloutPlanFactory(release=ReleaseFactory(templates=templates("{{ site.code }}")))
    bad = RolloutPlanFactory(
        release=ReleaseFactory(templates=templates("{% if site.code == 'TX-0007' %}{{ 'x'|center(10**9) }}{% endif %}"))
    )
    client = client_for("planner", [*VIEW, "rollouts.add_dryrun", "workflows.view_workflowrun"])

    started = [client.post(f"/api/v1/rollout-plans/{plan.pk}/dry-run/", {}, format="json") for plan in (good, bad)]
    wait_sweeping(lambda: ended(client, good.pk) and ended(client, bad.pk), 120, "both dry runs ending")

    assert [response.status_code for response in started] == [202, 202]
    passed, refused = dry_run_api(client, good.pk), dry_run_api(client, bad.pk)
    assert passed["state"] == "succeeded", passed["error"]
    assert passed["progress"] == {"rendered": len(sites), "total": len(sites)}
    assert sorted(row["code"] for wave in passed["result"]["waves"] for row in wave["sites"]) == [s.code for s in sites]
    assert refused["state"] == "failed" and refused["result"] is None
    assert refused["error"].startswith("a.yaml (site TX-0007): unsafe template: center width 1,000,000,000")
    run = client.get(f"/api/v1/workflow-runs/{refused['run']}/").json()
    assert run["kind"] == "rollout.dry_run" and run["state"] == "failed"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_dry_run_is_cancelled_through_the_workflow_run_api(celery_worker: Worker) -> None:
    for n in range(1, 81):
        SiteFactory(code=f"TX-{n:04d}")
    plan = RolloutPlanFactory(release=ReleaseFactory(templates=templates(SLOW)))
    client = client_for(
        "operator", [*VIEW, "rollouts.add_dryrun", "workflows.view_workflowrun", "workflows.cancel_workflowrun"]
    )

    run_id = client.post(f"/api/v1/rollout-plans/{plan.pk}/dry-run/", {}, format="json").json()["run"]
    cancel = client.post(f"/api/v1/workflow-runs/{run_id}/cancel/", {"reason": "not now"}, format="json")
    wait_sweeping(lambda: ended(client, plan.pk), 120, "the dry run ending")

    assert cancel.status_code == 202, cancel.content
    result = dry_run_api(client, plan.pk)
    assert result["state"] == "cancelled" and result["error"] == "cancelled: not now"
    assert result["progress"]["rendered"] < 80
