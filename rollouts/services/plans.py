"""Rollout plans: their checks, the beat entry that starts a scheduled plan (kept in step with the plan's
schedule), and the waves a plan makes of its target when it starts (or in a dry run)."""

import json
import zoneinfo
from typing import Any

from celery.schedules import crontab
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, PeriodicTask

from fleet.audit.choices import Source
from fleet.audit.services import Actor, audit_record, field_values
from fleet.errors import Conflict, Invalid
from fleet.updates import model_update
from fleet.validation import full_clean_or_invalid
from rollouts import approvals, k3s_policy, planning, selectors
from rollouts.models import RolloutPlan
from rollouts.services.actors import user_of
from sites.labels import LabelSelector
from sites.models import Site

PLAN_FIELDS = (
    "name",
    "release",
    "target",
    "waves",
    "max_parallel",
    "failure_threshold",
    "bake_seconds",
    "require_approval",
    "two_person_rule",
    "low_risk",
    "respect_windows",
    "auto_rollback",
    "start_at",
    "cron",
    "timezone",
    "site_deadline_seconds",
    "progress_deadline_seconds",
    "min_success_seconds",
    "allow_unreachable_waves",
)
# What a rollout copies from its plan at start: editing the plan later does not change a running rollout.
PLAN_SNAPSHOT_FIELDS = tuple(f for f in PLAN_FIELDS if f not in ("name", "release", "start_at", "cron", "timezone"))
START_PLAN_TASK = "rollouts.start_plan"


# --- rollout plans ----------------------------------------------------------------------------------


def rollout_plan_create(*, actor: Actor, source: Source, **fields: Any) -> RolloutPlan:
    """Create a plan after checking target, waves, threshold, schedule; keeps its beat schedule in step."""
    unknown = set(fields) - set(PLAN_FIELDS)
    if unknown:
        raise Invalid(f"unknown rollout plan fields: {', '.join(sorted(unknown))}")
    plan = RolloutPlan(**fields)
    _validate_plan(plan, changed=set(fields))
    if plan.low_risk:
        approvals.low_risk_mark(plan=plan, actor=actor)
    with transaction.atomic():
        if RolloutPlan.objects.filter(name=plan.name).exists():
            raise Invalid(f"a rollout plan named {plan.name} already exists", field="name")
        plan.created_by = plan.last_edited_by = user_of(actor)  # type: ignore[assignment]
        plan.save()
        _sync_periodic_task(plan)
        audit_record(actor=actor, verb="create", obj=plan, source=source, payload=field_values(plan, PLAN_FIELDS))
    return plan


def rollout_plan_update(*, plan: RolloutPlan, actor: Actor, source: Source, **changes: Any) -> RolloutPlan:
    """Change a plan. Rollouts already started keep the settings they started with.

    Any change clears the plan's low-risk mark, unless the same request keeps `low_risk` true, which
    needs rollouts.mark_low_risk (Forbidden otherwise): what was judged low-risk is what runs.
    """

    def name_free_and_mark(row: RolloutPlan, diff: dict[str, list[Any]]) -> list[str]:
        if RolloutPlan.objects.exclude(pk=row.pk).filter(name=row.name).exists():
            raise Invalid(f"a rollout plan named {row.name} already exists", field="name")
        if changes.get("low_risk"):
            approvals.low_risk_mark(plan=row, actor=actor)
        elif diff["low_risk"][0] if "low_risk" in diff else row.low_risk:
            approvals.low_risk_unmark(row)
            diff["low_risk"] = [True, False]
        row.last_edited_by = user_of(actor)  # type: ignore[assignment]
        return ["low_risk", "low_risk_by", "low_risk_at", "last_edited_by"]

    def resync_schedule(row: RolloutPlan, diff: dict[str, list[Any]]) -> None:
        # Only a schedule change touches the beat entry: re-saving it would re-enable a one-off start
        # that beat already ran and disabled.
        if {"cron", "start_at", "timezone"} & set(diff):
            _sync_periodic_task(row)

    return model_update(
        plan,
        changes=changes,
        fields=PLAN_FIELDS,
        kind="rollout plan",
        actor=actor,
        source=source,
        validate=lambda row, changed: _validate_plan(row, changed=changed),
        on_change=name_free_and_mark,
        after=resync_schedule,
    )


def rollout_plan_delete(*, plan: RolloutPlan, actor: Actor, source: Source) -> None:
    """Delete a plan that never ran, with its beat schedule."""
    with transaction.atomic():
        plan = RolloutPlan.objects.select_for_update().get(pk=plan.pk)
        if plan.rollouts.exists():
            raise Conflict(f"rollout plan {plan.name} has rollouts; it is kept as their record")
        audit_record(actor=actor, verb="delete", obj=plan, source=source, payload={"name": plan.name})
        task = plan.periodic_task
        plan.delete()
        if task is not None:
            task.delete()


def _validate_plan(plan: RolloutPlan, *, changed: set[str]) -> None:
    """Everything about a plan that can be checked before it runs. Raises Invalid naming the field."""
    planning.check_plan_numbers({name: getattr(plan, name) for name in planning.PLAN_NUMBER_RANGES})
    full_clean_or_invalid(plan, exclude=["created_by", "periodic_task", "target", "waves", "failure_threshold"])
    target = planning.check_target(plan.target)
    if "labels" in target:
        LabelSelector.parse(target["labels"], field="target")
    if "sites" in target:
        selectors.unknown_site_codes(target["sites"], field="target")
    planning.check_waves(plan.waves, target)
    canaries = [code for wave in plan.waves for code in wave.get("sites", [])]
    if canaries:
        selectors.unknown_site_codes(canaries, field="waves")
    planning.check_threshold(plan.failure_threshold)
    _check_health_gates(plan)
    release = plan.release if plan.release_id else None
    if release is not None and k3s_policy.is_k3s(release.application):
        sites = selectors.plan_target_sites(plan.target)
        k3s_policy.check_plan(release=release, auto_rollback=plan.auto_rollback, sites=sites)
    if plan.cron:
        parse_cron(plan.cron)
    try:
        zoneinfo.ZoneInfo(plan.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise Invalid(f"{plan.timezone!r} is not an IANA time zone (e.g. America/Chicago)", field="timezone") from exc
    if plan.start_at is not None:
        if timezone.is_naive(plan.start_at):
            raise Invalid("start_at needs a time zone (e.g. 2025-03-01T06:00:00Z)", field="start_at")
        if "start_at" in changed and plan.start_at <= timezone.now():
            raise Invalid("start_at is in the past", field="start_at")


def _check_health_gates(plan: RolloutPlan) -> None:
    """The deadlines a site is judged by must leave it time to succeed."""
    if plan.progress_deadline_seconds is not None and plan.progress_deadline_seconds < 1:
        raise Invalid(
            "progress_deadline_seconds must be at least 1, or empty for each Deployment's own deadline",
            field="progress_deadline_seconds",
        )
    if plan.min_success_seconds >= plan.site_deadline_seconds:
        raise Invalid(
            f"min_success_seconds ({plan.min_success_seconds}) must be shorter than site_deadline_seconds "
            f"({plan.site_deadline_seconds}): no site could succeed in time",
            field="min_success_seconds",
        )


def parse_cron(expression: str) -> dict[str, str]:
    """Five cron fields -> CrontabSchedule's fields; Invalid when celery's parser refuses them."""
    parts = expression.split()
    if len(parts) != 5:
        raise Invalid(
            f"{expression!r} is not a cron expression: give five fields (minute hour day-of-month month day-of-week)",
            field="cron",
        )
    fields = dict(zip(("minute", "hour", "day_of_month", "month_of_year", "day_of_week"), parts, strict=True))
    try:
        crontab(**fields)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise Invalid(f"{expression!r} is not a cron expression: {exc}", field="cron") from exc
    return fields


def periodic_task_name(plan: RolloutPlan) -> str:
    return f"rollout-plan:{plan.pk}"


def _sync_periodic_task(plan: RolloutPlan) -> None:
    """One beat entry per plan: a crontab (from start_at on, if set), or a one-off clocked start at start_at."""
    task = plan.periodic_task
    if not plan.cron and plan.start_at is None:
        if task is not None:
            plan.periodic_task = None
            plan.save(update_fields=["periodic_task"])
            task.delete()
        return
    if task is None:
        task = PeriodicTask(name=periodic_task_name(plan), task=START_PLAN_TASK)
    task.kwargs = json.dumps({"plan_id": plan.pk})
    task.enabled = True
    task.description = f"starts rollout plan {plan.name} (kept in step by rollouts.services)"
    if plan.cron:
        schedule, _ = CrontabSchedule.objects.get_or_create(**parse_cron(plan.cron), timezone=plan.timezone)
        task.crontab, task.clocked, task.one_off, task.start_time = schedule, None, False, plan.start_at
    else:
        assert plan.start_at is not None  # noqa: S101  # checked above
        clocked, _ = ClockedSchedule.objects.get_or_create(clocked_time=plan.start_at)
        task.crontab, task.clocked, task.one_off, task.start_time = None, clocked, True, None
    task.save()
    if plan.periodic_task_id != task.pk:
        plan.periodic_task = task
        plan.save(update_fields=["periodic_task"])


# --- the waves a plan makes -----------------------------------------------------------------------


def rollout_plan_waves(*, plan: RolloutPlan) -> tuple[list[Site], list[planning.PlannedWave]]:
    """The plan checked, its target's sites and the waves they would go in if it started now. Renders
    nothing: a dry run (rollouts.dry_runs) and `rollout_start` render every site in the renderer."""
    _validate_plan(plan, changed=set())
    sites = selectors.plan_target_sites(plan.target)
    if not sites:
        raise Invalid("the plan's target matches no site", field="target")
    waves = planning.plan_waves(waves=plan.waves, sites=sites, seed=plan_seed(plan))
    return sites, waves


def plan_seed(plan: RolloutPlan) -> str:
    """What makes a plan's order stable: its id (so renaming it does not reshuffle the fleet)."""
    return f"plan:{plan.pk}"


def plan_dropped_canaries(plan: RolloutPlan, in_target: dict[str, Site]) -> list[str]:
    """Canary codes of the plan's waves that are not in its target (decommissioned since?)."""
    return sorted({code for wave in plan.waves for code in wave.get("sites", []) if code not in in_target})
