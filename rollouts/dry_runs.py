"""Dry runs of a rollout plan, in the background: `dry_run_start` stores a DryRun and starts a
`rollout.dry_run` run on the plan (plan -> render, in short repeated steps -> report) that works out the
waves the plan would make, each site's window, and whether the release renders at every targeted site
within the renderer's limits; it writes nothing but its DryRun row. docs/ARCHITECTURE.md ("Dry runs")
tells the steps and their bounds."""

import datetime as dt
import time
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from fleet.audit.choices import Source
from fleet.audit.services import Actor, actor_name, field_values
from fleet.errors import Conflict, FleetError, Invalid
from fleet.workflows import (
    ACTIVE_STATES,
    Done,
    Fail,
    Outcome,
    Retry,
    RunState,
    Step,
    Wait,
    Workflow,
    WorkflowRun,
    active_run,
    register,
    start,
)
from rollouts import isolation, planning
from rollouts.choices import DryRunState
from rollouts.models import DryRun, RolloutPlan
from rollouts.rendering import ReleaseRenderer
from rollouts.schedule import site_next_open, site_window_open
from rollouts.selectors import SITE_FIELDS_FOR_PLANNING
from rollouts.services import PLAN_SNAPSHOT_FIELDS, plan_dropped_canaries, rollout_plan_waves
from rollouts.services.actors import require_perm, user_of
from sites.models import Site

DRY_RUN_KIND = "rollout.dry_run"
# Rendering time per render step, and sites read per step, before it yields to the next.
STEP_SECONDS = 5.0
BATCH_SITES = 500
DEADLINE = dt.timedelta(minutes=30)
KEEP = 10
# A render step may overrun STEP_SECONDS by one site's render, asked twice (the release itself is sent
# again to a renderer that has not compiled it), each within FLEET_RENDER_TIMEOUT_SECONDS.
RENDER_STEP_TIMEOUT = STEP_SECONDS + 2 * float(getattr(settings, "FLEET_RENDER_TIMEOUT_SECONDS", 5.0)) + 10.0


def dry_run_start(*, plan: RolloutPlan, actor: Actor, source: Source, at: dt.datetime | None = None) -> DryRun:
    """Start a dry run of the plan as if it started at `at` (default: now). Forbidden without
    `rollouts.add_dryrun`; Conflict while one of this plan runs, or FLEET_DRY_RUN_MAX_ACTIVE in all."""
    require_perm(actor, "rollouts.add_dryrun")
    at = at or timezone.now()
    if timezone.is_naive(at):
        raise Invalid("at needs a time zone (e.g. 2025-03-01T06:00:00Z)", field="at")
    with transaction.atomic():
        plan = RolloutPlan.objects.select_for_update().get(pk=plan.pk)
        running = active_run(plan)
        if running is not None:
            raise Conflict(
                f"dry run of plan {plan.name} is already {running.state} (workflow run {running.pk}); "
                "wait for it, or cancel that run"
            )
        active = WorkflowRun.objects.filter(kind=DRY_RUN_KIND, state__in=ACTIVE_STATES).count()
        if active >= settings.FLEET_DRY_RUN_MAX_ACTIVE:
            raise Conflict(f"{active} dry runs are running (FLEET_DRY_RUN_MAX_ACTIVE); try again when one has ended")
        dry_run = DryRun.objects.create(
            plan=plan,
            release_id=plan.release_id,
            at=at,
            requested_by=user_of(actor),  # type: ignore[misc]  # any AUTH_USER_MODEL
            requested_by_name=actor_name(actor)[:150],
        )
        dry_run.run = start(
            kind=DRY_RUN_KIND, subject=plan, actor=actor, source=source, context={"dry_run": dry_run.pk}
        )
        dry_run.save(update_fields=["run"])
        stale = list(DryRun.objects.filter(plan=plan).values_list("pk", flat=True)[KEEP:])
        DryRun.objects.filter(pk__in=stale).delete()
    return dry_run


# --- the run --------------------------------------------------------------------------------------------


def _dry_run(ctx: dict[str, Any]) -> DryRun:
    dry_run = DryRun.objects.select_related("plan", "release__application").filter(pk=int(ctx["dry_run"])).first()
    if dry_run is None:
        raise LookupError(f"dry run {ctx.get('dry_run')} no longer exists")
    return dry_run


def _codes(dry_run: DryRun) -> list[str]:
    return [row["code"] for wave in dry_run.result.get("waves", []) for row in wave["sites"]]


def plan_step(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """The waves the plan would make now, stored on the DryRun (each site's code, region and time zone)."""
    dry_run = _dry_run(ctx)
    plan = dry_run.plan
    try:
        sites, waves = rollout_plan_waves(plan=plan)
    except Invalid as exc:
        return Fail(exc.message)
    by_code = {site.code: site for site in sites}
    warnings = []
    dropped = plan_dropped_canaries(plan, by_code)
    if dropped:
        warnings.append(f"canary sites not in the target (decommissioned?) are left out: {', '.join(dropped)}")
    if len(waves) < len(plan.waves):
        warnings.append(f"the target is small: {len(plan.waves) - len(waves)} plan wave(s) get no site")
    dry_run.result = {
        "release": dry_run.release_id,
        "version": dry_run.release.version,
        "target_size": len(sites),
        "respect_windows": plan.respect_windows,
        "gates": planning.describe_gates(field_values(plan, PLAN_SNAPSHOT_FIELDS)),
        "waves": [
            {
                "index": wave.index,
                "name": wave.name,
                "plan_wave": wave.plan_index,
                "size": wave.size,
                "sites": [
                    {"code": code, "region": by_code[code].region, "timezone": by_code[code].timezone}
                    for code in wave.sites
                ],
            }
            for wave in waves
        ],
        "warnings": warnings,
    }
    dry_run.total_sites = len(sites)
    dry_run.save(update_fields=["result", "total_sites"])
    return Done({"cursor": 0, "render_seconds": 0.0})


def render_step(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Render the release for the next sites, within the per-site limits and what is left of the
    release's limit; Wait to go on, Done after the last site, Fail naming the first site that fails."""
    dry_run = _dry_run(ctx)
    codes = _codes(dry_run)
    cursor = int(ctx.get("cursor", 0))
    limits = isolation.RenderLimits.current()
    budget = isolation.ReleaseBudget(limits.release_seconds, spent=float(ctx.get("render_seconds", 0.0)), sites=cursor)
    batch = codes[cursor : cursor + BATCH_SITES]
    sites = {site.code: site for site in Site.objects.filter(code__in=batch).only(*SITE_FIELDS_FOR_PLANNING)}
    renderer = ReleaseRenderer.for_release(dry_run.release)
    yield_at = time.monotonic() + STEP_SECONDS
    try:
        for code in batch:
            if code in sites:  # a site deleted since the plan step is no longer anyone's concern
                renderer.render_checked(sites[code], budget=budget)
            cursor += 1
            if time.monotonic() >= yield_at:
                break
    except Invalid as exc:
        return Fail(exc.message)
    except FleetError as exc:  # the renderer could not be started: the machine's trouble, try again
        return Retry(exc.message)
    finally:
        ctx["cursor"], ctx["render_seconds"] = cursor, round(budget.used(), 3)
        DryRun.objects.filter(pk=dry_run.pk).update(rendered_sites=cursor)
    if cursor < len(codes):
        return Wait(0.01, f"rendered {cursor} of {len(codes)} sites")
    return Done()


def report_step(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Each site's window as of `at` (when the plan respects windows); the DryRun's result is complete."""
    dry_run = _dry_run(ctx)
    result = dry_run.result
    if result.get("respect_windows"):
        sites = {
            site.code: site for site in Site.objects.filter(code__in=_codes(dry_run)).only(*SITE_FIELDS_FOR_PLANNING)
        }
        for wave in result["waves"]:
            for row in wave["sites"]:
                site = sites.get(row["code"])
                next_open = site_next_open(site, dry_run.at) if site is not None else None
                row["window_open"] = site_window_open(site, dry_run.at) if site is not None else False
                row["next_window_at"] = next_open.isoformat() if next_open else None
    result["at"] = dry_run.at.isoformat()
    result["render_seconds"] = ctx.get("render_seconds", 0.0)
    DryRun.objects.filter(pk=dry_run.pk).update(result=result)
    return Done()


def dry_run_finished(run: WorkflowRun) -> None:
    """on_finish: the DryRun takes its run's end (state, error, time)."""
    ends: dict[str, str] = {RunState.SUCCEEDED: DryRunState.SUCCEEDED, RunState.CANCELLED: DryRunState.CANCELLED}
    state = ends.get(run.state, DryRunState.FAILED)
    DryRun.objects.filter(pk=int((run.context or {}).get("dry_run") or 0)).update(
        state=state, error="" if state == DryRunState.SUCCEEDED else run.error[:4000], finished_at=timezone.now()
    )


DRY_RUN = register(
    Workflow(
        kind=DRY_RUN_KIND,
        steps=[
            Step("plan", plan_step, timeout=60, max_attempts=3),
            Step("render", render_step, timeout=RENDER_STEP_TIMEOUT, queue="io", max_attempts=3, retry_cap=30),
            Step("report", report_step, timeout=60, max_attempts=3),
        ],
        deadline=DEADLINE,
        exclusive=True,
        on_finish=dry_run_finished,
        description="a rollout plan's waves, windows and the release rendered at every targeted site",
    )
)
