"""Actions on ONE site of a rollout (rollouts.services.site_actions) through the service, the API and the
admin: retry a failed site, skip one with a reason; permissions, audit and every refusal's answer."""

import pytest
from django.test import Client

from fleet.audit.models import AuditEvent
from rollouts import services
from rollouts.models import Rollout, SiteRollout
from rollouts.services.site_actions import site_rollout_retry, site_rollout_skip
from tests.factories import SiteFactory, UserFactory
from tests.rollouts.conftest import VIEW, client_for
from tests.rollouts.factories import RolloutPlanFactory

pytestmark = pytest.mark.django_db

OPERATE = [*VIEW, "rollouts.view_siterollout", "rollouts.change_siterollout"]


@pytest.fixture
def rollout() -> Rollout:
    """A running rollout of 4 sites in one wave, the first failed (its wave is open)."""
    for _ in range(4):
        SiteFactory()
    plan = RolloutPlanFactory(waves=[{"name": "all", "percent": 100}], failure_threshold={"count": 3})
    rollout = services.rollout_start(plan=plan, actor="t", source="test")
    services.rollout_wave_open(rollout=rollout, index=0, actor="t", source="test")
    row = SiteRollout.objects.filter(rollout=rollout).order_by("position").first()
    services.site_rollout_transition(site_rollout=row, to="committing", actor="w", source="workflow")
    services.site_rollout_transition(site_rollout=row, to="failed", actor="w", source="workflow", error="boom")
    rollout.refresh_from_db()
    return rollout


def rows(rollout: Rollout) -> list[SiteRollout]:
    return list(SiteRollout.objects.filter(rollout=rollout).select_related("site").order_by("position"))


def test_retry_puts_a_failed_site_back_to_pending_and_audits_it(rollout: Rollout) -> None:
    failed = rows(rollout)[0]
    person = UserFactory(username="sam", perms=["rollouts.change_siterollout"])

    row = site_rollout_retry(site_rollout=failed, actor=person, source="test", reason="registry fixed")

    assert row.state == "pending" and row.error == "" and row.started_at is None
    rollout.refresh_from_db()
    assert (rollout.n_failed, rollout.n_pending) == (0, 4)
    event = AuditEvent.objects.get(verb="site_retry")
    assert event.payload["site"] == failed.site.code and event.payload["reason"] == "registry fixed"


def test_skip_needs_a_reason_and_never_counts_as_failed(rollout: Rollout) -> None:
    pending = rows(rollout)[1]
    person = UserFactory(username="sam", perms=["rollouts.change_siterollout"])

    with pytest.raises(Exception, match="reason is required"):
        site_rollout_skip(site_rollout=pending, actor=person, source="test", reason=" ")
    row = site_rollout_skip(site_rollout=pending, actor=person, source="test", reason="closed for works")

    assert (row.state, row.skip_reason) == ("skipped", "by_person")
    assert "skipped by sam: closed for works" in row.error
    rollout.refresh_from_db()
    assert (rollout.n_skipped, rollout.n_skipped_by_person, rollout.n_failed) == (1, 1, 1)


def test_api_answers_each_refusal_with_its_status_and_field(rollout: Rollout) -> None:
    failed, pending = rows(rollout)[:2]
    operator = client_for("operator", OPERATE)
    viewer = client_for("viewer", [*VIEW, "rollouts.view_siterollout"])

    assert viewer.post(f"/api/v1/site-rollouts/{failed.pk}/retry/").status_code == 403
    assert operator.post("/api/v1/site-rollouts/999999/retry/").status_code == 404
    no_reason = operator.post(f"/api/v1/site-rollouts/{pending.pk}/skip/", {}, format="json")
    assert no_reason.status_code == 400 and "reason" in no_reason.json(), no_reason.content
    not_failed = operator.post(f"/api/v1/site-rollouts/{pending.pk}/retry/")
    assert not_failed.status_code == 409 and "state" in not_failed.json(), not_failed.content
    too_long = operator.post(f"/api/v1/site-rollouts/{pending.pk}/skip/", {"reason": "x" * 501}, format="json")
    assert too_long.status_code == 400 and "reason" in str(too_long.json())

    retried = operator.post(f"/api/v1/site-rollouts/{failed.pk}/retry/", {"reason": "fixed"}, format="json")
    assert retried.status_code == 200 and retried.json()["state"] == "pending"
    skipped = operator.post(f"/api/v1/site-rollouts/{pending.pk}/skip/", {"reason": "closed"}, format="json")
    assert skipped.status_code == 200 and skipped.json()["skip_reason"] == "by_person"
    again = operator.post(f"/api/v1/site-rollouts/{pending.pk}/skip/", {"reason": "closed"}, format="json")
    assert again.status_code == 409


def test_retry_refused_once_the_rollout_is_finished(rollout: Rollout) -> None:
    services.rollout_cancel(rollout=rollout, actor="t", source="test", reason="stop")
    operator = client_for("operator", OPERATE)
    answer = operator.post(f"/api/v1/site-rollouts/{rows(rollout)[0].pk}/retry/")
    assert answer.status_code == 409 and "cancelled" in str(answer.json())


def test_admin_retry_and_skip_through_a_confirmation(rollout: Rollout) -> None:
    failed, pending = rows(rollout)[:2]
    person = UserFactory(username="sam", is_staff=True, perms=OPERATE)
    client = Client()
    client.force_login(person)
    page = client.get(f"/admin/rollouts/rollout/{rollout.pk}/change/").content.decode()
    assert f"/admin/rollouts/siterollout/{failed.pk}/action/retry/" in page
    assert f"/admin/sites/site/{failed.site_id}/change/" in page  # the failing site links to its site page

    url = f"/admin/rollouts/siterollout/{pending.pk}/action/skip/"
    assert b"Yes, skip" in client.get(url).content
    assert client.post(url, {"reason": ""}).status_code == 200  # the form asks for the reason again
    assert client.post(url, {"reason": "closed for works"}).status_code == 302
    assert client.post(f"/admin/rollouts/siterollout/{failed.pk}/action/retry/", {"reason": ""}).status_code == 302
    states = [row.state for row in rows(rollout)[:2]]
    assert states == ["pending", "skipped"]
    page = client.get(f"/admin/rollouts/rollout/{rollout.pk}/change/").content.decode()
    assert "closed for works" in page  # the reason is shown on the rollout page

    viewer = UserFactory(username="viewer", is_staff=True, perms=[*VIEW, "rollouts.view_siterollout"])
    client.force_login(viewer)
    assert client.post(url, {"reason": "x"}).status_code == 403
