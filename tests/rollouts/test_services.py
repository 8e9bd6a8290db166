"""Rollouts services: validation (nothing written on refusal), start, overlap, controls, counters, beat."""

import datetime as dt

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from fleet.audit.models import AuditEvent
from fleet.errors import Conflict, Forbidden, Invalid
from rollouts import dry_runs, services
from rollouts.choices import RolloutState
from rollouts.models import Release, Rollout, RolloutPlan, SiteRollout
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
