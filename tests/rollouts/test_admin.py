"""The rollouts admin: pages render without a query per row, saves and actions go through the services."""

import pytest
from django.test import Client

from fleet.audit.models import AuditEvent
from rollouts import services
from rollouts.models import Application, DryRun, Rollout, SiteRollout
from tests.factories import SiteFactory, UserFactory
from tests.rollouts.factories import ReleaseFactory, RolloutPlanFactory
from tests.rollouts.runs import run_to_end

pytestmark = pytest.mark.django_db


@pytest.fixture
def rollout() -> Rollout:
    for _ in range(6):
        SiteFactory()
    plan = RolloutPlanFactory(waves=[{"name": "canary", "count": 2}, {"percent": 100}], require_approval=True)
    rollout = services.rollout_start(plan=plan, actor="t", source="test")
    row = SiteRollout.objects.filter(rollout=rollout).order_by("position").first()
    services.site_rollout_transition(site_rollout=row, to="committing", actor="w", source="workflow")
    services.site_rollout_transition(
        site_rollout=row, to="failed", actor="w", source="workflow", error="deployment pos: ImagePullBackOff"
    )
    return rollout


def test_admin_pages_render(staff: Client, rollout: Rollout) -> None:
    plan, release = rollout.plan, rollout.release
    paths = [
        "/admin/rollouts/application/",
        "/admin/rollouts/application/add/",
        f"/admin/rollouts/application/{release.application_id}/change/",
        "/admin/rollouts/release/",
        "/admin/rollouts/release/add/",
        "/admin/rollouts/rolloutplan/",
        "/admin/rollouts/rolloutplan/add/",
        f"/admin/rollouts/rolloutplan/{plan.pk}/change/",
        "/admin/rollouts/rollout/",
        "/admin/rollouts/rollout/?state__exact=running",
        "/admin/rollouts/siterollout/",
        f"/admin/rollouts/siterollout/?rollout__id__exact={rollout.pk}&state__exact=failed&wave__index=0",
    ]
    for path in paths:
        assert staff.get(path).status_code == 200, path


def test_rollout_page_shows_progress_failures_and_buttons(staff: Client, rollout: Rollout) -> None:
    page = staff.get(f"/admin/rollouts/rollout/{rollout.pk}/change/").content.decode()

    assert "ImagePullBackOff" in page
    assert "1 failed, 5 pending of 6" in page  # pending drawn as pending, not as done
    assert "canary" in page
    for action in ("pause", "cancel", "rollback"):
        assert f"/admin/rollouts/rollout/{rollout.pk}/action/{action}/" in page
    assert "/action/approve/" not in page  # not awaiting approval
    assert "/action/resume/" not in page


def test_rollout_page_says_which_sites_failed_and_why_the_others_were_skipped(staff: Client, rollout: Rollout) -> None:
    rows = list(SiteRollout.objects.filter(rollout=rollout, state="pending").order_by("position"))
    services.site_rollout_transition(site_rollout=rows[0], to="committing", actor="w", source="workflow")
    services.site_rollout_transition(
        site_rollout=rows[0], to="skipped", actor="w", source="workflow", skip_reason="unreachable", error="offline"
    )
    services.site_rollout_transition(site_rollout=rows[1], to="skipped", actor="w", source="workflow")

    page = staff.get(f"/admin/rollouts/rollout/{rollout.pk}/change/").content.decode()

    assert "failing sites count against the threshold" in page.lower()
    assert "skipped sites (do not count as failed)" in page.lower()
    assert "1 could not be reached, 1 never started" in page
    assert "a site fails when a Deployment of the release exceeds its own progressDeadlineSeconds" in page
    assert "a wave of only skipped sites halts" in page
    listing = staff.get(
        f"/admin/rollouts/siterollout/?rollout__id__exact={rollout.pk}&skip_reason__exact=unreachable"
    ).content.decode()
    assert rows[0].site.code in listing and rows[1].site.code not in listing
    assert "could not be reached" in listing


def test_plan_form_has_the_health_gates(staff: Client) -> None:
    page = staff.get("/admin/rollouts/rolloutplan/add/").content.decode()
    for field in ("progress_deadline_seconds", "min_success_seconds", "allow_unreachable_waves"):
        assert f'name="{field}"' in page


def test_locked_release_is_read_only(staff: Client, rollout: Rollout) -> None:
    page = staff.get(f"/admin/rollouts/release/{rollout.release_id}/change/").content.decode()
    assert 'name="templates"' not in page
    unlocked = ReleaseFactory()
    assert 'name="templates"' in staff.get(f"/admin/rollouts/release/{unlocked.pk}/change/").content.decode()


def test_action_confirmation_then_service(staff: Client, rollout: Rollout) -> None:
    url = f"/admin/rollouts/rollout/{rollout.pk}/action/pause/"
    confirm = staff.get(url)
    assert confirm.status_code == 200 and b"Yes, pause" in confirm.content
    assert Rollout.objects.get(pk=rollout.pk).state == "running"

    done = staff.post(url, {"reason": "dinner rush"})
    assert done.status_code == 302
    assert Rollout.objects.get(pk=rollout.pk).state == "paused"
    assert AuditEvent.objects.filter(verb="transition", payload__reason="dinner rush").exists()

    refused = staff.post(f"/admin/rollouts/rollout/{rollout.pk}/action/approve/", {"reason": ""}, follow=True)
    assert b"it is not awaiting an approval" in refused.content


def test_actions_need_permissions(rollout: Rollout) -> None:
    viewer = UserFactory(username="viewer", is_staff=True, perms=["rollouts.view_rollout"])
    client = Client()
    client.force_login(viewer)
    page = client.get(f"/admin/rollouts/rollout/{rollout.pk}/change/").content.decode()
    assert "/action/pause/" not in page
    assert client.post(f"/admin/rollouts/rollout/{rollout.pk}/action/pause/").status_code == 403
    assert Rollout.objects.get(pk=rollout.pk).state == "running"


def test_plan_dry_run_and_start_pages(staff: Client) -> None:
    windows = [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "02:00", "end": "04:00"}]
    site = SiteFactory(maintenance_windows=windows)
    plan = RolloutPlanFactory(respect_windows=True)

    url = f"/admin/rollouts/rolloutplan/{plan.pk}/dry-run/"
    assert "No dry run of this plan yet" in staff.get(url).content.decode()
    assert staff.post(url).status_code == 302
    dry_run = DryRun.objects.get(plan=plan)
    assert "this page refreshes" in staff.get(url).content.decode()
    run_to_end(dry_run.run_id)
    page = staff.get(url).content.decode()
    assert str(site.code) in page and "next window" in page and "succeeded" in page
    assert "fails if it was reached, and is skipped if not" in page and "skipped sites do not count" in page
    assert not Rollout.objects.exists()

    assert b"Yes, start" in staff.get(f"/admin/rollouts/rolloutplan/{plan.pk}/start/").content
    started = staff.post(f"/admin/rollouts/rolloutplan/{plan.pk}/start/", {"reason": "weekly release"})
    assert started.status_code == 302
    assert Rollout.objects.get().plan == plan


def test_adding_an_application_goes_through_the_service(staff: Client) -> None:
    response = staff.post(
        "/admin/rollouts/application/add/",
        {
            "name": "kds",
            "team": "kitchen",
            "namespace": "kds",
            "extra_namespaces": "[]",
            "allowed_cluster_kinds": "[]",
            "description": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Application.objects.get().name == "kds"
    assert AuditEvent.objects.filter(verb="create", object_type="rollouts.application", source="admin").exists()


def test_adding_a_bad_release_shows_the_template_error(staff: Client) -> None:
    app = ReleaseFactory().application
    response = staff.post(
        "/admin/rollouts/release/add/",
        {"application": app.pk, "version": "9.9", "templates": '{"a.yaml": "{{ cycler.__init__ }}"}', "values": "{}"},
    )
    assert response.status_code == 200
    assert "a.yaml: unsafe template" in response.content.decode()


def test_rollout_list_does_not_query_per_row(staff: Client, django_assert_max_num_queries: object) -> None:
    for _ in range(4):
        SiteFactory()
    for _ in range(10):
        services.rollout_start(
            plan=RolloutPlanFactory(release=ReleaseFactory(), waves=[{"count": 1}, {"percent": 100}]),
            actor="t",
            source="test",
        )
    with django_assert_max_num_queries(12):  # type: ignore[operator]
        assert staff.get("/admin/rollouts/rollout/").status_code == 200


def test_site_rollout_list_does_not_query_per_row(
    staff: Client, rollout: Rollout, django_assert_max_num_queries: object
) -> None:
    with django_assert_max_num_queries(12):  # type: ignore[operator]
        response = staff.get(f"/admin/rollouts/siterollout/?rollout__id__exact={rollout.pk}")
    assert response.status_code == 200
