"""Rollouts services: validation (nothing written on refusal), start, overlap, controls, counters, beat."""

import datetime as dt

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from fleet.audit.models import AuditEvent
from fleet.errors import Conflict, Forbidden, Invalid
from rollouts import dry_runs, selectors, services
from rollouts.choices import RolloutState, SiteRolloutState
from rollouts.models import Release, Rollout, RolloutPlan, RolloutWave, SiteRollout
from rollouts.progress import decide
from rollouts.tasks import rollout_plan_start_task
from sites.choices import SiteState
from tests.factories import SiteFactory, UserFactory
from tests.rollouts.factories import ApplicationFactory, ReleaseFactory, RolloutPlanFactory
from tests.rollouts.runs import run_to_end

pytestmark = pytest.mark.django_db

BAD_TEMPLATE = {"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: elsewhere}\n"}


def make_sites(n: int, **fields: object) -> list:
    return [SiteFactory(**fields) for _ in range(n)]


def plan_fields(release: Release, **overrides: object) -> dict:
    fields = {
        "name": "spring",
        "release": release,
        "target": {"all": True},
        "waves": [{"percent": 10}, {"percent": 100}],
        "failure_threshold": {"percent": 10},
        "respect_windows": False,
    }
    fields.update(overrides)
    return fields


# --- applications and releases ----------------------------------------------------------------------


def test_application_create_and_bad_namespace() -> None:
    app = services.application_create(actor="t", source="test", name="pos", team="store", namespace="pos")
    assert app.pk and AuditEvent.objects.filter(verb="create", object_type="rollouts.application").exists()

    with pytest.raises(Invalid) as caught:
        services.application_create(actor="t", source="test", name="kds", team="store", namespace="Not_DNS")
    assert "namespace" in caught.value.errors


def test_application_name_and_namespace_are_fixed_once_released() -> None:
    release = ReleaseFactory(locked_at=timezone.now())
    with pytest.raises(Conflict, match="namespace cannot change"):
        services.application_update(application=release.application, actor="t", source="test", namespace="other")
    services.application_update(application=release.application, actor="t", source="test", team="new-team")


def test_release_create_validates_and_writes_nothing_on_refusal() -> None:
    app = ApplicationFactory()
    with pytest.raises(Invalid, match="a.yaml: document 0: ConfigMap 'x' is in namespace 'elsewhere'"):
        services.release_create(actor="t", source="test", application=app, version="1.0", templates=BAD_TEMPLATE)
    assert not Release.objects.exists()
    assert not AuditEvent.objects.exists()


def test_release_versions_are_unique_per_application() -> None:
    release = ReleaseFactory(version="2.0")
    with pytest.raises(Invalid, match="already has a release 2.0"):
        services.release_create(
            actor="t", source="test", application=release.application, version="2.0", templates=release.templates
        )


def test_a_locked_release_is_immutable() -> None:
    release = ReleaseFactory(locked_at=timezone.now())
    with pytest.raises(Conflict, match="is locked"):
        services.release_update(release=release, actor="t", source="test", values={"greeting": "hi", "replicas": 2})
    with pytest.raises(Conflict, match="is locked"):
        services.release_delete(release=release, actor="t", source="test")
    assert Release.objects.get(pk=release.pk).values["greeting"] == "hello"


# --- plans --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"waves": [{"percent": 10}, {"percent": 50}]}, "waves", "do not cover the target"),
        ({"failure_threshold": {"percent": 150}}, "failure_threshold", "between 0 and 100"),
        ({"failure_threshold": {"count": -1}}, "failure_threshold", "0 or more"),
        ({"cron": "61 * * * *"}, "cron", "not a cron expression"),
        ({"cron": "every day"}, "cron", "five fields"),
        ({"cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "timezone", "not an IANA time zone"),
        ({"max_parallel": 0}, "max_parallel", "at least 1"),
        ({"target": {"sites": ["TX-9999", "TX-9998"]}}, "target", "unknown site codes: TX-9998, TX-9999"),
        ({"target": {"labels": "tier in ("}}, "target", "unbalanced"),
        ({"target": {"everything": True}}, "target", "target must be one of"),
        ({"waves": [{"sites": ["ZZ-0001"]}, {"percent": 100}]}, "waves", "unknown site codes: ZZ-0001"),
        ({"start_at": dt.datetime(2020, 1, 1, tzinfo=dt.UTC)}, "start_at", "in the past"),
        ({"name": ""}, "name", "blank"),
        ({"progress_deadline_seconds": 0}, "progress_deadline_seconds", "at least 1"),
        ({"min_success_seconds": 3600, "site_deadline_seconds": 600}, "min_success_seconds", "must be shorter"),
        ({"min_success_seconds": -1}, "min_success_seconds", "must be at least 0"),
    ],
)
def test_bad_plans_are_refused_and_nothing_is_written(overrides: dict, field: str, message: str) -> None:
    SiteFactory()
    release = ReleaseFactory()

    with pytest.raises(Invalid) as caught:
        services.rollout_plan_create(actor="t", source="test", **plan_fields(release, **overrides))

    assert field in caught.value.errors, caught.value.errors
    assert message in str(caught.value.errors[field]) or message in caught.value.message
    assert not RolloutPlan.objects.exists()
    assert not PeriodicTask.objects.filter(name__startswith="rollout-plan").exists()
    assert not AuditEvent.objects.exists()


def test_a_cron_plan_keeps_its_beat_schedule_in_step() -> None:
    release = ReleaseFactory()
    plan = services.rollout_plan_create(
        actor="t", source="test", **plan_fields(release, cron="0 3 * * mon-fri", timezone="America/Chicago")
    )
    task = PeriodicTask.objects.get(name=f"rollout-plan:{plan.pk}")
    assert task.task == "rollouts.start_plan"
    assert task.kwargs == f'{{"plan_id": {plan.pk}}}'
    assert (task.crontab.hour, task.crontab.day_of_week, str(task.crontab.timezone)) == (
        "3",
        "mon-fri",
        "America/Chicago",
    )

    services.rollout_plan_update(plan=plan, actor="t", source="test", cron="30 4 * * *")
    task.refresh_from_db()
    assert (task.crontab.minute, task.crontab.hour) == ("30", "4")

    later = timezone.now() + dt.timedelta(days=1)
    services.rollout_plan_update(plan=plan, actor="t", source="test", cron="", start_at=later)
    task.refresh_from_db()
    assert task.clocked.clocked_time == later and task.one_off and task.crontab is None

    services.rollout_plan_update(plan=plan, actor="t", source="test", start_at=None)
    assert not PeriodicTask.objects.filter(name=f"rollout-plan:{plan.pk}").exists()

    services.rollout_plan_update(plan=plan, actor="t", source="test", cron="0 1 * * *")
    services.rollout_plan_delete(plan=plan, actor="t", source="test")
    assert not PeriodicTask.objects.filter(name__startswith="rollout-plan").exists()


def test_beat_task_starts_the_plan_and_logs_refusals() -> None:
    make_sites(3)
    plan = RolloutPlanFactory()

    rollout_id = rollout_plan_start_task(plan.pk)
    assert Rollout.objects.get(pk=rollout_id).started_by_name == "system:beat"
    assert rollout_plan_start_task(plan.pk) is None  # the first one still holds the sites
    assert rollout_plan_start_task(10**9) is None


# --- dry run and start --------------------------------------------------------------------------------


def test_dry_run_shows_waves_and_window_times_and_writes_nothing() -> None:
    windows = [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "02:00", "end": "04:00"}]
    make_sites(10, maintenance_windows=windows, timezone="America/Chicago")
    SiteFactory(state=SiteState.DECOMMISSIONED)
    plan = RolloutPlanFactory(respect_windows=True, waves=[{"count": 2}, {"percent": 100}])
    at = dt.datetime(2025, 3, 3, 18, 0, tzinfo=dt.UTC)

    dry_run = dry_runs.dry_run_start(plan=plan, actor="t", source="test", at=at)
    run_to_end(dry_run.run_id)
    dry_run.refresh_from_db()
    result = dry_run.result

    assert dry_run.state == "succeeded", dry_run.error
    assert result["target_size"] == 10
    assert [w["size"] for w in result["waves"]] == [2, 8]
    first = result["waves"][0]["sites"][0]
    assert first["window_open"] is False
    assert first["next_window_at"] == "2025-03-04T08:00:00+00:00"
    assert not Rollout.objects.exists() and not SiteRollout.objects.exists()
    assert Release.objects.get().locked_at is None


def test_start_stores_waves_and_pending_sites_and_locks_the_release() -> None:
    canary = make_sites(20)[5].code
    user = UserFactory(perms=["rollouts.start_rollout"])
    plan = RolloutPlanFactory(waves=[{"name": "canary", "sites": [canary]}, {"percent": 25}, {"percent": 100}])

    rollout = services.rollout_start(plan=plan, actor=user, source="test", reason="weekly release")

    assert rollout.state == RolloutState.RUNNING
    assert rollout.started_by == user and rollout.started_by_name == user.username
    waves = list(rollout.waves.order_by("index"))
    assert [(w.name, w.size, w.n_pending) for w in waves] == [("canary", 1, 1), ("wave 1", 4, 4), ("wave 2", 15, 15)]
    assert rollout.n_pending == 20 and rollout.counts["succeeded"] == 0
    assert SiteRollout.objects.filter(rollout=rollout, state="pending").count() == 20
    assert SiteRollout.objects.get(rollout=rollout, position=0).site.code == canary
    plan.release.refresh_from_db()
    assert plan.release.locked_at is not None
    assert rollout.plan_snapshot["failure_threshold"] == {"count": 0}
    assert AuditEvent.objects.filter(verb="start", object_type="rollouts.rollout").exists()


def test_start_needs_the_start_permission() -> None:
    make_sites(2)
    with pytest.raises(Forbidden, match="rollouts.start_rollout"):
        services.rollout_start(plan=RolloutPlanFactory(), actor=UserFactory(), source="test")
    assert not Rollout.objects.exists()


def test_start_refuses_a_target_site_the_release_does_not_render_for_and_writes_nothing() -> None:
    SiteFactory(labels={"tier": "pilot"})
    SiteFactory(code="TX-0666", labels={})
    release = ReleaseFactory(
        templates={
            "a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: {{ release.namespace }}\n"
            "data: {tier: {{ site.labels.tier }}}\n"
        }
    )
    plan = RolloutPlanFactory(release=release)

    with pytest.raises(Invalid, match=r"a.yaml \(site TX-0666\): UndefinedError"):
        services.rollout_start(plan=plan, actor="t", source="test")
    assert not Rollout.objects.exists()
    release.refresh_from_db()
    assert release.locked_at is None


def test_overlapping_running_rollout_in_the_same_namespace_is_409() -> None:
    sites = make_sites(4)
    first_release = ReleaseFactory(application__namespace="pos")
    first = services.rollout_start(
        plan=RolloutPlanFactory(
            release=first_release, target={"sites": [s.code for s in sites[:2]]}, waves=[{"percent": 100}]
        ),
        actor="t",
        source="test",
    )
    other_app_same_ns = ReleaseFactory(application__namespace="pos")
    overlapping = RolloutPlanFactory(release=other_app_same_ns, target={"sites": [sites[1].code, sites[2].code]})

    with pytest.raises(Conflict) as caught:
        services.rollout_start(plan=overlapping, actor="t", source="test")

    assert f"rollout {first.pk}" in caught.value.message
    assert sites[1].code in caught.value.message and "running" in caught.value.message
    assert Rollout.objects.count() == 1

    # Elsewhere in the fleet, or in another namespace, or once the first is finished: fine.
    services.rollout_start(
        plan=RolloutPlanFactory(release=other_app_same_ns, target={"sites": [sites[3].code]}, waves=[{"percent": 100}]),
        actor="t",
        source="test",
    )
    services.rollout_start(plan=RolloutPlanFactory(target={"sites": [sites[1].code]}), actor="t", source="test")
    services.rollout_cancel(rollout=first, actor="t", source="test")
    services.rollout_start(plan=overlapping, actor="t", source="test")


def test_decommissioned_sites_are_left_out_and_an_empty_target_is_refused() -> None:
    SiteFactory(state=SiteState.DECOMMISSIONED, labels={"tier": "gone"})
    active = SiteFactory(labels={"tier": "pilot"})
    rollout = services.rollout_start(plan=RolloutPlanFactory(target={"labels": "tier"}), actor="t", source="test")
    assert list(SiteRollout.objects.filter(rollout=rollout).values_list("site", flat=True)) == [active.pk]

    with pytest.raises(Invalid, match="matches no site"):
        services.rollout_start(plan=RolloutPlanFactory(target={"labels": "tier=gone"}), actor="t", source="test")


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
