"""Every write to applications, releases, plans and rollouts. Admin, API, beat and the rollout workflow
call these, so each door validates, audits and refuses in the same way.

Nothing here talks to a site: `rollout_start` stores the plan's waves and sites; the rollout workflow
(fleet.workflows) drives the sites, deciding each step with rollouts.progress.decide and recording
it with `site_rollout_transition`, `rollout_wave_open`, `rollout_wave_close` and `rollout_transition`.
"""

import datetime as dt
import json
import zoneinfo
from collections import Counter
from typing import Any

from celery.schedules import crontab
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, F
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, PeriodicTask

from fleet.audit.services import Actor, actor_name, audit_record, changes_between, field_values
from fleet.errors import Conflict, Forbidden, Invalid
from fleet.permissions import is_person
from fleet.transitions import require_move, require_state
from fleet.validation import full_clean_or_invalid
from rollouts import approvals, planning, selectors
from rollouts.choices import (
    ROLLOUT_ACTIVE_STATES,
    ROLLOUT_FINISHED_STATES,
    ROLLOUT_ROLLBACK_STATES,
    ROLLOUT_TRANSITIONS,
    SITE_DONE_STATES,
    SITE_IN_FLIGHT_STATES,
    SITE_NOT_STARTED_STATES,
    SITE_ROLLOUT_TRANSITIONS,
    RolloutState,
    SiteRolloutState,
    SkipReason,
    WaveState,
)
from rollouts.models import (
    Application,
    Release,
    Rollout,
    RolloutPlan,
    RolloutWave,
    SiteRollout,
    counter_field,
    skip_counter_field,
)
from rollouts.rendering import ReleaseRenderer, validate_release
from sites.labels import LabelSelector
from sites.models import Site

APPLICATION_FIELDS = (
    "name",
    "team",
    "namespace",
    "stateful",
    "restore_image",
    "extra_namespaces",
    "allowed_cluster_kinds",
    "description",
)
RELEASE_FIELDS = ("version", "templates", "values")
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


def _user(actor: Actor) -> AbstractBaseUser | None:
    return actor if isinstance(actor, AbstractBaseUser) else None


def _require_perm(actor: Actor, perm: str) -> None:
    """People need the permission; system actors (beat, workflow: plain strings) act on their own authority."""
    if isinstance(actor, str):
        return
    has_perm = getattr(actor, "has_perm", None)
    if actor is None or not actor.is_authenticated or has_perm is None or not has_perm(perm):
        raise Forbidden(f"you need the {perm} permission")


def _require_reason(actor: Actor, reason: str) -> str:
    """People say why they start, cancel or roll back a rollout (Invalid naming `reason`); the system
    components that do it (beat, the workflow's automatic roll back) give their own."""
    reason = (reason or "").strip()
    if not reason and is_person(actor):
        raise Invalid("a reason is required", field="reason")
    return reason


# --- applications -----------------------------------------------------------------------------------


def application_create(*, actor: Actor, source: str, **fields: Any) -> Application:
    """Create an application. Raises Invalid for bad fields or a duplicate name."""
    unknown = set(fields) - set(APPLICATION_FIELDS)
    if unknown:
        raise Invalid(f"unknown application fields: {', '.join(sorted(unknown))}")
    application = Application(**fields)
    full_clean_or_invalid(application)
    _check_namespaces(application)
    with transaction.atomic():
        if Application.objects.filter(name=application.name).exists():
            raise Invalid(f"an application named {application.name} already exists", field="name")
        application.save()
        audit_record(
            actor=actor,
            verb="create",
            obj=application,
            source=source,
            payload=field_values(application, APPLICATION_FIELDS),
        )
    return application


def _check_namespaces(application: Application) -> None:
    if application.namespace in application.extra_namespaces:
        raise Invalid("extra_namespaces repeats the application's own namespace", field="extra_namespaces")


def application_update(*, application: Application, actor: Actor, source: str, **changes: Any) -> Application:
    """Change an application. Its name and namespaces are fixed once a rollout used one of its releases:
    sites hold its objects there, under apps/<name>/."""
    unknown = set(changes) - set(APPLICATION_FIELDS)
    if unknown:
        raise Invalid(f"these application fields cannot be changed here: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        application = Application.objects.select_for_update().get(pk=application.pk)
        before = field_values(application, APPLICATION_FIELDS)
        for key, value in changes.items():
            setattr(application, key, value)
        full_clean_or_invalid(application)
        _check_namespaces(application)
        diff = changes_between(before, field_values(application, APPLICATION_FIELDS))
        fixed = {"name", "namespace", "extra_namespaces", "allowed_cluster_kinds"} & set(diff)
        if fixed and application.releases.filter(locked_at__isnull=False).exists():
            raise Conflict(
                f"application {before['name']} has released to sites; {', '.join(sorted(fixed))} cannot change",
                field=sorted(fixed)[0],
            )
        if diff:
            if Application.objects.exclude(pk=application.pk).filter(name=application.name).exists():
                raise Invalid(f"an application named {application.name} already exists", field="name")
            application.save()
            audit_record(actor=actor, verb="update", obj=application, source=source, payload={"changes": diff})
    return application


def application_delete(*, application: Application, actor: Actor, source: str) -> None:
    """Delete an application that has no release."""
    with transaction.atomic():
        if application.releases.exists():
            raise Conflict(f"application {application.name} has releases; it cannot be deleted")
        audit_record(actor=actor, verb="delete", obj=application, source=source, payload={"name": application.name})
        application.delete()


# --- releases ---------------------------------------------------------------------------------------


def release_create(
    *,
    actor: Actor,
    source: str,
    application: Application,
    version: str,
    templates: Any,
    values: Any = None,
) -> Release:
    """Create a release after rendering every template for the sample site and a few real sites (one per
    region and label set, FLEET_RENDER_CHECK_SITES) in the renderer process, and checking the manifests.

    Raises Invalid naming the template path, the site, the document and the reason, or the site and the
    renderer limit passed; Invalid for a duplicate version. Every targeted site is rendered again when a
    rollout starts (and by a dry run), so a template that fails at one site only is refused there.
    """
    values = {} if values is None else values
    release = Release(application=application, version=version, templates=templates, values=values)
    if Release.objects.filter(application=application, version=version).exists():
        raise Invalid(f"{application.name} already has a release {version}", field="version")
    full_clean_or_invalid(release, exclude=["created_by"])
    validate_release(
        application=application, version=version, templates=templates, values=values, sites=_release_check_sites()
    )
    with transaction.atomic():
        if Release.objects.filter(application=application, version=version).exists():
            raise Invalid(f"{application.name} already has a release {version}", field="version")
        release.created_by = release.last_edited_by = _user(actor)  # type: ignore[assignment]
        release.save()
        audit_record(
            actor=actor,
            verb="create",
            obj=release,
            source=source,
            payload={"application": application.name, "version": version, "templates": sorted(templates)},
        )
    return release


def release_update(*, release: Release, actor: Actor, source: str, **changes: Any) -> Release:
    """Change a release that no rollout has used yet; a locked release is immutable (Conflict).

    The changed release is rendered as at creation before the transaction (rendering takes up to
    FLEET_RENDER_RELEASE_SECONDS, too long to hold a row lock, or SQLite's write lock); the transaction
    then refuses (Conflict) if the release changed meanwhile, so what is saved is what was rendered.
    """
    unknown = set(changes) - set(RELEASE_FIELDS)
    if unknown:
        raise Invalid(f"these release fields cannot be changed: {', '.join(sorted(unknown))}")
    release = Release.objects.select_related("application").get(pk=release.pk)
    _check_unlocked(release)
    before = field_values(release, RELEASE_FIELDS)
    for key, value in changes.items():
        setattr(release, key, value)
    full_clean_or_invalid(release, exclude=["created_by"])
    if changes_between(before, field_values(release, RELEASE_FIELDS)):
        validate_release(
            application=release.application,
            version=release.version,
            templates=release.templates,
            values=release.values,
            sites=_release_check_sites(),
        )
    with transaction.atomic():
        locked = Release.objects.select_for_update().select_related("application").get(pk=release.pk)
        _check_unlocked(locked)
        if field_values(locked, RELEASE_FIELDS) != before:
            raise Conflict(f"release {locked} changed while this change was being checked; try again")
        diff = changes_between(before, field_values(release, RELEASE_FIELDS))
        if not diff:
            return locked
        clash = Release.objects.exclude(pk=release.pk).filter(application=release.application, version=release.version)
        if clash.exists():
            raise Invalid(f"{release.application.name} already has a release {release.version}", field="version")
        release.last_edited_by = _user(actor)  # type: ignore[assignment]
        release.save()
        audit_record(actor=actor, verb="update", obj=release, source=source, payload={"changed": sorted(diff)})
        approvals.low_risk_clear_for_release(release=release, actor=actor, source=source)
    return release


def _release_check_sites() -> list[Site]:
    return selectors.release_check_sites(settings.FLEET_RENDER_CHECK_SITES)


def release_delete(*, release: Release, actor: Actor, source: str) -> None:
    """Delete a release that no rollout used and no plan names."""
    with transaction.atomic():
        release = Release.objects.select_for_update().get(pk=release.pk)
        _check_unlocked(release)
        if release.plans.exists():
            raise Conflict(f"release {release} is named by a rollout plan; change or delete the plan first")
        audit_record(actor=actor, verb="delete", obj=release, source=source, payload={"version": release.version})
        release.delete()


def _check_unlocked(release: Release) -> None:
    if release.locked_at is not None:
        raise Conflict(
            f"release {release} is locked (used by a rollout since {release.locked_at.isoformat()}); "
            "create a new version instead",
            field="templates",
        )


# --- rollout plans ----------------------------------------------------------------------------------


def rollout_plan_create(*, actor: Actor, source: str, **fields: Any) -> RolloutPlan:
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
        plan.created_by = plan.last_edited_by = _user(actor)  # type: ignore[assignment]
        plan.save()
        _sync_periodic_task(plan)
        audit_record(actor=actor, verb="create", obj=plan, source=source, payload=field_values(plan, PLAN_FIELDS))
    return plan


def rollout_plan_update(*, plan: RolloutPlan, actor: Actor, source: str, **changes: Any) -> RolloutPlan:
    """Change a plan. Rollouts already started keep the settings they started with.

    Any change clears the plan's low-risk mark, unless the same request keeps `low_risk` true, which
    needs rollouts.mark_low_risk (Forbidden otherwise): what was judged low-risk is what runs.
    """
    unknown = set(changes) - set(PLAN_FIELDS)
    if unknown:
        raise Invalid(f"these rollout plan fields cannot be changed: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        plan = RolloutPlan.objects.select_for_update().get(pk=plan.pk)
        before = field_values(plan, PLAN_FIELDS)
        for key, value in changes.items():
            setattr(plan, key, value)
        diff = changes_between(before, field_values(plan, PLAN_FIELDS))
        _validate_plan(plan, changed=set(diff))
        if diff:
            if RolloutPlan.objects.exclude(pk=plan.pk).filter(name=plan.name).exists():
                raise Invalid(f"a rollout plan named {plan.name} already exists", field="name")
            if changes.get("low_risk"):
                approvals.low_risk_mark(plan=plan, actor=actor)
            elif before["low_risk"]:
                approvals.low_risk_unmark(plan)
                diff["low_risk"] = [True, False]
            plan.last_edited_by = _user(actor)  # type: ignore[assignment]
            plan.save()
            # Only a schedule change touches the beat entry: re-saving it would re-enable a one-off start
            # that beat already ran and disabled.
            if {"cron", "start_at", "timezone"} & set(diff):
                _sync_periodic_task(plan)
            audit_record(actor=actor, verb="update", obj=plan, source=source, payload={"changes": diff})
    return plan


def rollout_plan_delete(*, plan: RolloutPlan, actor: Actor, source: str) -> None:
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


# --- dry run and start ------------------------------------------------------------------------------


def rollout_plan_waves(*, plan: RolloutPlan) -> tuple[list[Site], list[planning.PlannedWave]]:
    """The plan checked, its target's sites and the waves they would go in if it started now. Renders
    nothing: a dry run (rollouts.dry_runs) and `rollout_start` render every site in the renderer."""
    _validate_plan(plan, changed=set())
    sites = selectors.plan_target_sites(plan.target)
    if not sites:
        raise Invalid("the plan's target matches no site", field="target")
    waves = planning.plan_waves(waves=plan.waves, sites=sites, seed=plan_seed(plan))
    return sites, waves


def _plan_and_check(plan: RolloutPlan) -> tuple[list[Site], list[planning.PlannedWave]]:
    """`rollout_plan_waves`, and the release rendered for every targeted site in the renderer process
    within FLEET_RENDER_RELEASE_SECONDS: Invalid naming the first site that fails or passes a limit."""
    sites, waves = rollout_plan_waves(plan=plan)
    ReleaseRenderer.for_release(plan.release).check_sites(sites)
    return sites, waves


def plan_seed(plan: RolloutPlan) -> str:
    """What makes a plan's order stable: its id (so renaming it does not reshuffle the fleet)."""
    return f"plan:{plan.pk}"


def plan_dropped_canaries(plan: RolloutPlan, in_target: dict[str, Site]) -> list[str]:
    """Canary codes of the plan's waves that are not in its target (decommissioned since?)."""
    return sorted({code for wave in plan.waves for code in wave.get("sites", []) if code not in in_target})


def rollout_start(
    *, plan: RolloutPlan, actor: Actor, source: str, reason: str = "", at: dt.datetime | None = None
) -> Rollout:
    """Start a rollout of the plan: store its waves and sites (all `pending`), lock the release.

    A person gives a reason (Invalid naming `reason`). The approval gates it gets (rollouts.approvals) are
    fixed in its plan snapshot. Refuses (Conflict) when another unfinished rollout into the same namespace
    holds any of the same sites. Writes nothing to any repository: the rollout workflow does that, site by
    site.
    """
    _require_perm(actor, "rollouts.start_rollout")
    reason = _require_reason(actor, reason)
    at = at or timezone.now()
    plan = RolloutPlan.objects.select_related("release__application").get(pk=plan.pk)
    # Rendering every site is the slow part: done before the transaction, which holds the write lock.
    sites, waves = _plan_and_check(plan)
    release = plan.release
    application = release.application
    site_by_code = {site.code: site for site in sites}
    with transaction.atomic():
        # Serialize starts into one namespace: every application sharing it is locked.
        list(Application.objects.select_for_update().filter(namespace=application.namespace).values_list("pk"))
        _check_no_overlap(application, [site.pk for site in sites])
        # The plan as checked and rendered above is the plan that runs, with its low-risk mark as it is now.
        fresh = RolloutPlan.objects.select_for_update(of=("self",)).select_related("low_risk_by").get(pk=plan.pk)
        if fresh.updated_at != plan.updated_at:
            raise Conflict(f"rollout plan {plan.name} changed while the rollout was being prepared; start it again")
        gates = approvals.gates_at_start(fresh)
        rollout = Rollout.objects.create(
            plan=plan,
            release=release,
            state=RolloutState.RUNNING,
            current_wave=0,
            plan_snapshot={**field_values(plan, PLAN_SNAPSHOT_FIELDS), **gates},
            started_by=_user(actor),  # type: ignore[misc]  # any AUTH_USER_MODEL
            started_by_name=actor_name(actor)[:150],
            started_at=at,
            state_changed_at=at,
            n_pending=len(sites),
        )
        wave_rows = RolloutWave.objects.bulk_create(
            [
                RolloutWave(rollout=rollout, index=w.index, name=w.name[:100], size=w.size, n_pending=w.size)
                for w in waves
            ]
        )
        if any(row.pk is None for row in wave_rows):  # backends without RETURNING on bulk insert
            wave_rows = list(rollout.waves.order_by("index"))
        position = 0
        site_rows = []
        for wave, row in zip(waves, wave_rows, strict=True):
            for code in wave.sites:
                site_rows.append(SiteRollout(rollout=rollout, wave=row, site=site_by_code[code], position=position))
                position += 1
        SiteRollout.objects.bulk_create(site_rows, batch_size=500)
        Release.objects.filter(pk=release.pk, locked_at__isnull=True).update(locked_at=at)
        _wake(rollout, actor=actor, source=source)
        audit_record(
            actor=actor,
            verb="start",
            obj=rollout,
            source=source,
            payload={
                "plan": plan.name,
                "release": str(release),
                "sites": len(sites),
                "waves": [{"name": w.name, "size": w.size} for w in waves],
                "left_out_canaries": plan_dropped_canaries(plan, site_by_code),
                "reason": reason,
                "gates": {k: v for k, v in gates.items() if k != "plan_last_edited_by"},
            },
        )
    return rollout


def _check_no_overlap(application: Application, site_ids: list[int]) -> None:
    clash = (
        SiteRollout.objects.filter(
            rollout__state__in=ROLLOUT_ACTIVE_STATES,
            rollout__release__application__namespace=application.namespace,
            site_id__in=site_ids,
        )
        .select_related("rollout", "site")
        .order_by("rollout_id", "position")
    )
    rows = list(clash[:6])
    if not rows:
        return
    other = rows[0].rollout
    total = clash.filter(rollout=other).count()
    codes = ", ".join(r.site.code for r in rows if r.rollout_id == other.pk)
    raise Conflict(
        f"rollout {other.pk} (plan {other.plan_id}, {other.state}) into namespace {application.namespace} already "
        f"holds {total} of these sites ({codes}{', ...' if total > 5 else ''}); "
        "let it finish, cancel it or roll it back"
    )


# --- controlling a rollout (people) -----------------------------------------------------------------


def rollout_pause(*, rollout: Rollout, actor: Actor, source: str, reason: str = "") -> Rollout:
    """Stop starting sites; sites in flight finish their current change."""
    _require_perm(actor, "rollouts.change_rollout")
    with transaction.atomic():
        rollout = rollout_transition(rollout=rollout, to=RolloutState.PAUSED, actor=actor, source=source, reason=reason)
        _wake(rollout, actor=actor, source=source)
    return rollout


def rollout_resume(*, rollout: Rollout, actor: Actor, source: str, reason: str = "") -> Rollout:
    """Carry on from where a pause left it (gates such as an approval are checked again)."""
    _require_perm(actor, "rollouts.change_rollout")
    with transaction.atomic():
        locked = Rollout.objects.select_for_update().get(pk=rollout.pk)
        if locked.state != RolloutState.PAUSED:
            raise Conflict(
                f"rollout {locked.pk} is {locked.state}; only a paused rollout can be resumed", field="state"
            )
        rollout = rollout_transition(rollout=locked, to=RolloutState.RUNNING, actor=actor, source=source, reason=reason)
        _wake(rollout, actor=actor, source=source)
        return rollout


def rollout_cancel(*, rollout: Rollout, actor: Actor, source: str, reason: str = "") -> Rollout:
    """Stop for good: sites not started are skipped; sites that got the release keep it (roll back for that).
    A person gives a reason (Invalid naming `reason`)."""
    _require_perm(actor, "rollouts.change_rollout")
    reason = _require_reason(actor, reason)
    with transaction.atomic():
        rollout = rollout_transition(
            rollout=rollout, to=RolloutState.CANCELLED, actor=actor, source=source, reason=reason
        )
        _bulk_site_transition(rollout, SITE_NOT_STARTED_STATES, SiteRolloutState.SKIPPED)
        _wake(rollout, actor=actor, source=source)
    rollout.refresh_from_db()
    return rollout


def rollout_approve(*, rollout: Rollout, actor: Actor, source: str, reason: str = "") -> Rollout:
    """Approve the wave a rollout awaits: its first wave (under the approval policy) or the next one.
    Under the two-person rule the approver is a person who did not start the rollout, edit its plan or
    write its release (rollouts.approvals: Forbidden saying which)."""
    _require_perm(actor, "rollouts.approve_rollout")
    with transaction.atomic():
        locked = Rollout.objects.select_for_update().select_related("plan", "release").get(pk=rollout.pk)
        if locked.state != RolloutState.AWAITING_APPROVAL:
            raise Conflict(f"rollout {locked.pk} is {locked.state}; it is not awaiting an approval", field="state")
        approvals.check_approver(rollout=locked, actor=actor)
        current = locked.waves.filter(index=locked.current_wave).first()
        following = (
            current
            if current is not None and current.opened_at is None
            else locked.waves.filter(index=locked.current_wave + 1).first()
        )
        if following is None:
            raise Conflict(f"rollout {locked.pk} has no wave after wave {locked.current_wave} to approve")
        now = timezone.now()
        RolloutWave.objects.filter(pk=following.pk).update(approved_by=_user(actor), approved_at=now)
        locked.approved_by = _user(actor)  # type: ignore[assignment]
        locked.save(update_fields=["approved_by"])
        audit_record(
            actor=actor,
            verb="approve",
            obj=locked,
            source=source,
            payload={"wave": following.index, "name": following.name, "reason": reason},
        )
        rollout = rollout_transition(rollout=locked, to=RolloutState.RUNNING, actor=actor, source=source, reason=reason)
        _wake(rollout, actor=actor, source=source)
        return rollout


def rollout_rollback(*, rollout: Rollout, actor: Actor, source: str, reason: str = "") -> Rollout:
    """Ask for every site that got the release to be put back at its previous revision.

    Records the request (and stops the rollout from starting more sites); the rollout workflow carries
    it out site by site and then moves the rollout to `rolled_back`. A person gives a reason (Invalid
    naming `reason`).
    """
    _require_perm(actor, "rollouts.change_rollout")
    reason = _require_reason(actor, reason)
    with transaction.atomic():
        locked = Rollout.objects.select_for_update().get(pk=rollout.pk)
        if locked.state not in ROLLOUT_ROLLBACK_STATES:
            raise Conflict(f"rollout {locked.pk} is {locked.state}; it cannot be rolled back", field="state")
        if locked.rollback_requested_at is not None:
            raise Conflict(
                f"rollout {locked.pk}: a roll back was already requested at {locked.rollback_requested_at.isoformat()}",
                field="state",
            )
        locked.rollback_requested_at = timezone.now()
        locked.rollback_requested_by = actor_name(actor)[:150]
        locked.rollback_reason = reason[:500]
        locked.save(update_fields=["rollback_requested_at", "rollback_requested_by", "rollback_reason"])
        audit_record(actor=actor, verb="rollback", obj=locked, source=source, payload={"reason": reason})
        _wake(locked, actor=actor, source=source)
    return locked


def skip_not_started_sites(*, rollout: Rollout, reason: str = "the rollout is being rolled back") -> int:
    """Skip every site of the rollout that has not started (a roll back or a halt starts no more sites),
    as never started, with `reason` in their sentence."""
    with transaction.atomic():
        Rollout.objects.select_for_update().filter(pk=rollout.pk).values_list("pk").first()
        return _bulk_site_transition(
            rollout, SITE_NOT_STARTED_STATES, SiteRolloutState.SKIPPED, error=f"not started: {reason}"[:2000]
        )


def _wake(rollout: Rollout, *, actor: Actor, source: str) -> None:
    """Let the rollout's driver run (rollouts.workflows) act on the change now, starting it if needed."""
    from rollouts.workflows import rollout_wake  # the workflows import this module

    rollout_wake(rollout=rollout, actor=actor, source=source)


# --- recording progress (the rollout workflow) ------------------------------------------------------


def rollout_transition(*, rollout: Rollout, to: str, actor: Actor, source: str, reason: str = "") -> Rollout:
    """Move a rollout to `to` if ROLLOUT_TRANSITIONS allows it (Conflict naming the state otherwise)."""
    require_state(to, states=RolloutState.values, kind="rollout")
    with transaction.atomic():
        locked = Rollout.objects.select_for_update().get(pk=rollout.pk)
        if locked.state == to:
            return locked
        require_move(ROLLOUT_TRANSITIONS, current=locked.state, to=to, subject=f"rollout {locked.pk}")
        before = locked.state
        now = timezone.now()
        locked.state = to
        locked.state_changed_at = now
        fields = ["state", "state_changed_at"]
        if to == RolloutState.HALTED:
            locked.halted_reason = reason[:500]
            fields.append("halted_reason")
        if to in ROLLOUT_FINISHED_STATES:
            locked.finished_at = now
            fields.append("finished_at")
        locked.save(update_fields=fields)
        audit_record(
            actor=actor,
            verb="transition",
            obj=locked,
            source=source,
            payload={"from": before, "to": to, "reason": reason},
        )
    return locked


def rollout_wave_open(*, rollout: Rollout, index: int, actor: Actor, source: str) -> RolloutWave:
    """Open wave `index` and make it the rollout's current wave (idempotent)."""
    with transaction.atomic():
        locked = Rollout.objects.select_for_update().get(pk=rollout.pk)
        wave = locked.waves.select_for_update().get(index=index)
        if wave.opened_at is not None:
            return wave
        if index > 0 and locked.waves.filter(index=index - 1, closed_at__isnull=True).exists():
            raise Conflict(f"rollout {locked.pk}: wave {index - 1} is still open", field="current_wave")
        wave.opened_at = timezone.now()
        wave.state = WaveState.OPEN
        wave.save(update_fields=["opened_at", "state"])
        locked.current_wave = index
        locked.save(update_fields=["current_wave"])
        audit_record(actor=actor, verb="open_wave", obj=locked, source=source, payload={"wave": index})
    return wave


def rollout_wave_close(
    *, rollout: Rollout, index: int, actor: Actor, source: str, bake_until: dt.datetime | None = None
) -> RolloutWave:
    """Close wave `index` (every site done), with the time its bake ends (idempotent)."""
    with transaction.atomic():
        wave = RolloutWave.objects.select_for_update().get(rollout=rollout, index=index)
        if wave.closed_at is not None:
            return wave
        wave.closed_at = timezone.now()
        wave.bake_until = bake_until
        wave.state = WaveState.CLOSED
        wave.save(update_fields=["closed_at", "bake_until", "state"])
        audit_record(
            actor=actor,
            verb="close_wave",
            obj=rollout,
            source=source,
            payload={
                "wave": index,
                "counts": wave.counts,
                "bake_until": bake_until.isoformat() if bake_until else None,
            },
        )
    return wave


def site_rollout_transition(
    *,
    site_rollout: SiteRollout,
    to: str,
    actor: Actor,
    source: str,
    error: str | None = None,
    revision: str | None = None,
    previous_revision: str | None = None,
    workflow_run_id: int | None = None,
    skip_reason: str | None = None,
) -> SiteRollout:
    """Move one site of a rollout to `to` (SITE_ROLLOUT_TRANSITIONS), keeping the wave's and the rollout's
    counters exact with F()-expressions in the same transaction. Moving to the current state only
    updates the other fields, so a workflow step may call it twice. A site moved to `skipped` records
    why (`skip_reason`, a SkipReason; never started when not given): failed sites count against the
    threshold, skipped ones do not, and the counters say which skipped sites could not be reached."""
    require_state(to, states=SiteRolloutState.values, kind="site rollout")
    with transaction.atomic():
        row = SiteRollout.objects.select_for_update().get(pk=site_rollout.pk)
        before = row.state
        require_move(SITE_ROLLOUT_TRANSITIONS, current=before, to=to, subject=f"site rollout {row.pk}")
        now = timezone.now()
        fields = []
        for name, value in (
            ("error", error),
            ("revision", revision),
            ("previous_revision", previous_revision),
            ("workflow_run_id", workflow_run_id),
        ):
            if value is not None:
                setattr(row, name, value)
                fields.append(name)
        if before != to:
            row.state = to
            fields.append("state")
            if to in SITE_IN_FLIGHT_STATES and row.started_at is None:
                row.started_at = now
                fields.append("started_at")
            if to in SITE_DONE_STATES:
                row.finished_at = now
                fields.append("finished_at")
            reason = None
            if to == SiteRolloutState.SKIPPED:
                reason = skip_reason or SkipReason.NOT_STARTED
                require_state(reason, states=SkipReason.values, kind="skip reason")
                row.skip_reason = reason
                fields.append("skip_reason")
            _move_counters(row.rollout_id, {row.wave_id: Counter({before: 1})}, to, skip_reason=reason)
        if fields:
            row.save(update_fields=fields)
        if before != to and to in (SiteRolloutState.FAILED, SiteRolloutState.SKIPPED, SiteRolloutState.ROLLED_BACK):
            # In-progress steps are recorded by the workflow's StepRuns; the outcomes people act on are audited.
            payload: dict[str, Any] = {"site": row.site.code, "from": before, "error": row.error[:1000]}
            if to == SiteRolloutState.FAILED:
                payload["counts_against_threshold"] = True
            if to == SiteRolloutState.SKIPPED:
                payload.update(skip_reason=row.skip_reason, counts_against_threshold=False)
            audit_record(actor=actor, verb="site_" + to, obj=row.rollout, source=source, payload=payload)
    return row


def site_rollouts_start(*, run_ids: dict[int, int]) -> list[SiteRollout]:
    """Move the not-started sites `run_ids` names ({site rollout id: workflow run id}) to `committing`,
    each with the run that drives it: one locking read, one UPDATE per counter row and one for the
    sites, however many start together (the driver opening a wave starts `max_parallel` at once).
    Rows that are no longer waiting to start are left alone; returns the ones moved."""
    with transaction.atomic():
        rows = list(
            SiteRollout.objects.select_for_update()
            .filter(pk__in=run_ids, state__in=SITE_NOT_STARTED_STATES)
            .order_by("position")
        )
        if not rows:
            return []
        now = timezone.now()
        moved: dict[int, Counter[str]] = {}
        for row in rows:
            moved.setdefault(row.wave_id, Counter())[row.state] += 1
            row.state, row.workflow_run_id = SiteRolloutState.COMMITTING, run_ids[row.pk]
            row.started_at = row.started_at or now
        SiteRollout.objects.bulk_update(rows, ["state", "workflow_run_id", "started_at"])
        _move_counters(rows[0].rollout_id, moved, SiteRolloutState.COMMITTING)
    return rows


def _move_counters(rollout_id: int, moved: dict[int, Counter[str]], to: str, *, skip_reason: str | None = None) -> None:
    """Shift counters from the states in `moved` (per wave id) to `to`, on the waves and on the rollout;
    sites moving to `skipped` also count under their `skip_reason` (skipped is final, so those
    counters only grow)."""
    total: Counter[str] = Counter()
    for wave_id, by_state in moved.items():
        updates: dict[str, Any] = {}
        for state, n in by_state.items():
            if state != to and n:
                updates[counter_field(state)] = F(counter_field(state)) - n
                total[state] += n
        count = sum(n for state, n in by_state.items() if state != to)
        if count:
            updates[counter_field(to)] = F(counter_field(to)) + count
            if skip_reason:
                updates[skip_counter_field(skip_reason)] = F(skip_counter_field(skip_reason)) + count
            RolloutWave.objects.filter(pk=wave_id).update(**updates)
    if total:
        updates = {counter_field(state): F(counter_field(state)) - n for state, n in total.items()}
        updates[counter_field(to)] = F(counter_field(to)) + sum(total.values())
        if skip_reason:
            updates[skip_counter_field(skip_reason)] = F(skip_counter_field(skip_reason)) + sum(total.values())
        Rollout.objects.filter(pk=rollout_id).update(**updates)


def _bulk_site_transition(
    rollout: Rollout, from_states: frozenset[str], to: str, *, error: str | None = None, skip_reason: str | None = None
) -> int:
    """Move every site of the rollout in `from_states` to `to`, counters included. Returns how many.
    Sites skipped this way never started: they are skipped as such, with `error` (default: the
    rollout's state) as the sentence."""
    moving = SiteRollout.objects.filter(rollout=rollout, state__in=from_states)
    moved: dict[int, Counter[str]] = {}
    for row in moving.values("wave_id", "state").annotate(n=Count("id")):
        moved.setdefault(row["wave_id"], Counter())[row["state"]] += row["n"]
    fields: dict[str, Any] = {"state": to}
    if to in SITE_DONE_STATES:
        fields["finished_at"] = timezone.now()
    if to == SiteRolloutState.SKIPPED:
        skip_reason = skip_reason or SkipReason.NOT_STARTED
        fields["skip_reason"] = skip_reason
        fields["error"] = error if error is not None else f"not started: the rollout was {rollout.state}"
    count = moving.update(**fields)
    _move_counters(rollout.pk, moved, to, skip_reason=skip_reason)
    return count


def rollout_recount(*, rollout: Rollout) -> bool:
    """Recompute the counters from the rows (a periodic reconcile's repair). Returns whether any was wrong."""
    with transaction.atomic():
        locked = Rollout.objects.select_for_update().get(pk=rollout.pk)
        per_wave: dict[int, Counter[str]] = {}
        rows = SiteRollout.objects.filter(rollout=locked).values("wave_id", "state", "skip_reason")
        for row in rows.annotate(n=Count("id")):
            counter = per_wave.setdefault(row["wave_id"], Counter())
            counter[counter_field(row["state"])] += row["n"]
            if row["state"] == SiteRolloutState.SKIPPED and row["skip_reason"]:
                counter[skip_counter_field(row["skip_reason"])] += row["n"]
        columns = [counter_field(s) for s in SiteRolloutState.values] + [
            skip_counter_field(r) for r in SkipReason.values
        ]
        wrong = False
        overall: Counter[str] = Counter()
        for wave in locked.waves.select_for_update():
            actual = per_wave.get(wave.pk, Counter())
            overall.update(actual)
            if any(getattr(wave, c) != actual.get(c, 0) for c in columns):
                wrong = True
                RolloutWave.objects.filter(pk=wave.pk).update(**{c: actual.get(c, 0) for c in columns})
        if any(getattr(locked, c) != overall.get(c, 0) for c in columns):
            wrong = True
            Rollout.objects.filter(pk=locked.pk).update(**{c: overall.get(c, 0) for c in columns})
    return wrong
