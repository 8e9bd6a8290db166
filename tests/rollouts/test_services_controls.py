"""The rollout services people and the driver use once a rollout runs: pause, resume, cancel, approve and roll back
(state table, permissions, the two-person rule), and the records of its progress (exact counters, skip reasons,
the progress view decide() reads)."""

import datetime as dt

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from fleet.audit.models import AuditEvent
from fleet.errors import Conflict, Forbidden, Invalid
from rollouts import dry_runs, selectors, services
from rollouts.choices import SiteRolloutState
from rollouts.models import Rollout, RolloutWave, SiteRollout
from rollouts.progress import decide
from tests.factories import SiteFactory, UserFactory
from tests.rollouts.factories import ReleaseFactory, RolloutPlanFactory
from tests.rollouts.runs import run_to_end
from tests.rollouts.test_services import make_sites, plan_fields

pytestmark = pytest.mark.django_db


# --- controls ---------------------------------------------------------------------------------------


@pytest.fixture
def rollout() -> Rollout:
    make_sites(6)
    plan = RolloutPlanFactory(waves=[{"count": 2}, {"percent": 100}], require_approval=True, two_person_rule=True)
    starter = UserFactory(username="starter", perms=["rollouts.start_rollout"])
    return services.rollout_start(plan=plan, actor=starter, source="test", reason="weekly release")


def test_pause_resume_cancel_follow_the_state_table(rollout: Rollout) -> None:
    operator = UserFactory(perms=["rollouts.change_rollout"])

    with pytest.raises(Conflict, match="is running; only a paused rollout can be resumed"):
        services.rollout_resume(rollout=rollout, actor=operator, source="test")
    assert services.rollout_pause(rollout=rollout, actor=operator, source="test").state == "paused"
    assert services.rollout_resume(rollout=rollout, actor=operator, source="test").state == "running"
    cancelled = services.rollout_cancel(rollout=rollout, actor=operator, source="test", reason="wrong release")
    assert cancelled.state == "cancelled" and cancelled.finished_at is not None
    assert cancelled.n_skipped == 6 and cancelled.n_pending == 0
    assert sum(w.n_skipped for w in cancelled.waves.all()) == 6
    with pytest.raises(Conflict, match="is cancelled; it cannot become paused"):
        services.rollout_pause(rollout=rollout, actor=operator, source="test")


def test_controls_need_permissions(rollout: Rollout) -> None:
    nobody = UserFactory(username="nobody")
    with pytest.raises(Forbidden, match="rollouts.change_rollout"):
        services.rollout_pause(rollout=rollout, actor=nobody, source="test")
    with pytest.raises(Forbidden, match="rollouts.approve_rollout"):
        services.rollout_approve(rollout=rollout, actor=nobody, source="test")


def test_approve_checks_state_and_the_two_person_rule(rollout: Rollout) -> None:
    starter = rollout.started_by
    starter.user_permissions.add(
        *UserFactory(username="tmp", perms=["rollouts.approve_rollout"]).user_permissions.all()
    )
    starter = type(starter).objects.get(pk=starter.pk)  # drop the permission cache
    approver = UserFactory(username="approver", perms=["rollouts.approve_rollout"])

    with pytest.raises(Conflict, match="is running; it is not awaiting an approval"):
        services.rollout_approve(rollout=rollout, actor=approver, source="test")

    services.rollout_wave_open(rollout=rollout, index=0, actor="workflow", source="workflow")
    services.rollout_wave_close(rollout=rollout, index=0, actor="workflow", source="workflow")
    services.rollout_transition(rollout=rollout, to="awaiting_approval", actor="workflow", source="workflow")

    with pytest.raises(Forbidden, match="two-person rule"):
        services.rollout_approve(rollout=rollout, actor=starter, source="test")
    with pytest.raises(Forbidden, match="needs a person"):
        services.rollout_approve(rollout=rollout, actor="system:beat", source="test")

    approved = services.rollout_approve(rollout=rollout, actor=approver, source="test")
    assert approved.state == "running" and approved.approved_by == approver
    assert RolloutWave.objects.get(rollout=rollout, index=1).approved_by == approver
    view = selectors.rollout_progress_view(approved, timezone.now())
    assert decide(view, timezone.now()).open_wave == 1


def test_rollback_is_recorded_once_and_refused_when_already_rolled_back(rollout: Rollout) -> None:
    operator = UserFactory(perms=["rollouts.change_rollout"])
    requested = services.rollout_rollback(rollout=rollout, actor=operator, source="test", reason="bad build")
    assert requested.rollback_requested_at and requested.rollback_requested_by == operator.username
    with pytest.raises(Conflict, match="already requested"):
        services.rollout_rollback(rollout=rollout, actor=operator, source="test", reason="again")
    assert decide(selectors.rollout_progress_view(requested, timezone.now()), timezone.now()).rollback

    services.rollout_transition(rollout=rollout, to="rolled_back", actor="workflow", source="workflow")
    with pytest.raises(Conflict, match="is rolled_back; it cannot be rolled back"):
        services.rollout_rollback(rollout=rollout, actor=operator, source="test", reason="again")


# --- recording progress -------------------------------------------------------------------------------


def test_site_transitions_keep_the_counters_exact(rollout: Rollout) -> None:
    rows = list(SiteRollout.objects.filter(rollout=rollout).order_by("position"))
    for to in ("committing", "syncing", "verifying", "succeeded"):
        services.site_rollout_transition(site_rollout=rows[0], to=to, actor="workflow", source="workflow")
    services.site_rollout_transition(site_rollout=rows[1], to="committing", actor="workflow", source="workflow")
    failed = services.site_rollout_transition(
        site_rollout=rows[1], to="failed", actor="workflow", source="workflow", error="ImagePullBackOff"
    )
    again = services.site_rollout_transition(site_rollout=rows[1], to="failed", actor="workflow", source="workflow")

    assert failed.error == again.error == "ImagePullBackOff"
    assert failed.started_at and failed.finished_at
    rollout.refresh_from_db()
    wave = rollout.waves.get(index=0)
    assert (rollout.n_succeeded, rollout.n_failed, rollout.n_pending, rollout.total) == (1, 1, 4, 6)
    assert (wave.n_succeeded, wave.n_failed, wave.n_pending) == (1, 1, 0)
    assert AuditEvent.objects.filter(verb="site_failed").count() == 1
    with pytest.raises(Conflict, match="is succeeded; it cannot become syncing"):
        services.site_rollout_transition(site_rollout=rows[0], to="syncing", actor="workflow", source="workflow")
    assert not services.rollout_recount(rollout=rollout)

    Rollout.objects.filter(pk=rollout.pk).update(n_pending=99)
    assert services.rollout_recount(rollout=rollout)
    rollout.refresh_from_db()
    assert rollout.n_pending == 4


def test_skipped_sites_say_why_and_only_failed_ones_count_against_the_threshold(rollout: Rollout) -> None:
    rows = list(SiteRollout.objects.filter(rollout=rollout).order_by("position"))
    services.site_rollout_transition(site_rollout=rows[0], to="committing", actor="workflow", source="workflow")
    services.site_rollout_transition(
        site_rollout=rows[0], to="skipped", actor="workflow", source="workflow", skip_reason="unreachable", error="x"
    )
    services.site_rollout_transition(site_rollout=rows[1], to="skipped", actor="workflow", source="workflow")
    services.site_rollout_transition(site_rollout=rows[2], to="committing", actor="workflow", source="workflow")
    services.site_rollout_transition(site_rollout=rows[2], to="failed", actor="workflow", source="workflow")
    with pytest.raises(Invalid, match="not a skip reason"):
        services.site_rollout_transition(
            site_rollout=rows[3], to="skipped", actor="workflow", source="workflow", skip_reason="bored"
        )

    rollout.refresh_from_db()
    assert rollout.skipped_counts == {"unreachable": 1, "not_started": 1, "cancelled": 0, "by_person": 0}
    assert (rollout.n_skipped, rollout.n_failed) == (2, 1)
    assert SiteRollout.objects.get(pk=rows[1].pk).skip_reason == "not_started"
    audit = {e.payload["site"]: e.payload for e in AuditEvent.objects.filter(verb__in=["site_skipped", "site_failed"])}
    assert audit[rows[0].site.code]["skip_reason"] == "unreachable"
    assert audit[rows[0].site.code]["counts_against_threshold"] is False
    assert audit[rows[2].site.code]["counts_against_threshold"] is True

    # Cancelling skips the rest as never started, with a sentence, and the recount agrees with the counters
    services.rollout_cancel(rollout=rollout, actor="t", source="test", reason="wrong release")
    rollout.refresh_from_db()
    assert rollout.skipped_counts == {"unreachable": 1, "not_started": 4, "cancelled": 0, "by_person": 0}
    assert SiteRollout.objects.get(pk=rows[3].pk).error == "not started: the rollout was cancelled"
    assert not services.rollout_recount(rollout=rollout)
    Rollout.objects.filter(pk=rollout.pk).update(n_skipped_unreachable=7)
    assert services.rollout_recount(rollout=rollout)
    rollout.refresh_from_db()
    assert rollout.n_skipped_unreachable == 1


def test_the_plan_snapshot_and_the_dry_run_carry_the_health_gates() -> None:
    SiteFactory()
    plan = services.rollout_plan_create(
        actor="t", source="test",
        **plan_fields(ReleaseFactory(), progress_deadline_seconds=120, min_success_seconds=30),
    )  # fmt: skip
    dry_run = dry_runs.dry_run_start(plan=plan, actor="t", source="test")
    run_to_end(dry_run.run_id)
    dry_run.refresh_from_db()
    gates = dry_run.result["gates"]
    assert (gates["progress_deadline_seconds"], gates["min_success_seconds"]) == (120, 30)
    assert "makes no progress for 120 s" in gates["progress_deadline_text"]
    rollout = services.rollout_start(plan=plan, actor="t", source="test")
    snapshot = rollout.plan_snapshot
    assert (snapshot["progress_deadline_seconds"], snapshot["min_success_seconds"]) == (120, 30)
    assert snapshot["allow_unreachable_waves"] is False


def test_progress_view_from_the_database_drives_decide(rollout: Rollout) -> None:
    now = timezone.now()
    view = selectors.rollout_progress_view(rollout, now)
    assert decide(view, now).open_wave == 0

    services.rollout_wave_open(rollout=rollout, index=0, actor="workflow", source="workflow")
    rollout.refresh_from_db()
    decision = decide(selectors.rollout_progress_view(rollout, now), now)
    first_wave_codes = list(
        SiteRollout.objects.filter(rollout=rollout, wave__index=0)
        .order_by("position")
        .values_list("site__code", flat=True)
    )
    assert list(decision.start) == first_wave_codes
    assert SiteRolloutState.PENDING in rollout.counts


def test_the_progress_view_reads_the_open_waves_in_flight_sites_and_as_many_more_as_slots_allow() -> None:
    make_sites(12)
    plan = RolloutPlanFactory(waves=[{"percent": 100}], max_parallel=3)
    rollout = services.rollout_start(plan=plan, actor="t", source="test")
    services.rollout_wave_open(rollout=rollout, index=0, actor="workflow", source="workflow")
    rows = list(SiteRollout.objects.filter(rollout=rollout).select_related("site").order_by("position"))
    for row, to in ((rows[0], "committing"), (rows[3], "committing")):
        services.site_rollout_transition(site_rollout=row, to=to, actor="workflow", source="workflow")
    services.site_rollout_transition(site_rollout=rows[1], to="skipped", actor="workflow", source="workflow")
    rollout.refresh_from_db()

    view = selectors.rollout_progress_view(rollout, timezone.now())

    (wave,) = view.waves
    # The in-flight site that started first (none is past its deadline), then one not-started site (the
    # one free slot): the first in planned order.
    assert [(s.code, s.state) for s in wave.sites] == [
        (rows[0].site.code, "committing"),
        (rows[2].site.code, "pending"),
    ]
    assert wave.size == 12 and wave.count(["pending"]) == 9 and wave.count(["skipped"]) == 1
    assert decide(view, timezone.now()).start == (rows[2].site.code,)


def test_editing_a_plan_does_not_re_enable_a_one_off_start_that_already_ran() -> None:
    plan = services.rollout_plan_create(
        actor="t", source="test", **plan_fields(ReleaseFactory(), start_at=timezone.now() + dt.timedelta(hours=1))
    )
    PeriodicTask.objects.filter(pk=plan.periodic_task_id).update(enabled=False)  # what beat does after the run

    services.rollout_plan_update(plan=plan, actor="t", source="test", bake_seconds=60)

    assert not PeriodicTask.objects.get(pk=plan.periodic_task_id).enabled
