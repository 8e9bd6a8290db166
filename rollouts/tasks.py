"""Celery tasks of the rollouts app: thin doors that take ids, re-read rows and call services."""

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from fleet.audit.choices import Source, SystemActor
from fleet.errors import FleetError
from rollouts import drift, services
from rollouts.models import RolloutPlan

logger = logging.getLogger(__name__)


@shared_task(name=services.START_PLAN_TASK)
def rollout_plan_start_task(plan_id: int) -> int | None:
    """Beat (a plan's cron or start_at): start a rollout of the plan. A refusal (an earlier rollout still
    holds the sites, a template fails for a site) is logged and leaves nothing behind."""
    plan = RolloutPlan.objects.filter(pk=plan_id).first()
    if plan is None:
        logger.warning("scheduled start of rollout plan %s: the plan no longer exists", plan_id)
        return None
    try:
        when = f"cron {plan.cron} ({plan.timezone})" if plan.cron else f"start_at {plan.start_at}"
        rollout = services.rollout_start(
            plan=plan, actor=SystemActor.BEAT, source=Source.BEAT, reason=f"scheduled start of plan {plan.name}: {when}"
        )
    except FleetError as exc:
        logger.warning("scheduled start of rollout plan %s (%s) refused: %s", plan.pk, plan.name, exc.message)
        return None
    return rollout.pk


DRIFT_SITES_TASK = "rollouts.drift_sites"


@shared_task(name="rollouts.drift_check", ignore_result=True)
def drift_check_task() -> int:
    """Beat: send the FLEET_DRIFT_BATCH sites checked longest ago, in chunks, to the io queue."""
    chunks = drift.drift_due_chunks(limit=settings.FLEET_DRIFT_BATCH, size=settings.FLEET_DRIFT_CHUNK)
    for chunk in chunks:
        drift_sites_task.apply_async(args=(chunk,), expires=settings.FLEET_DRIFT_INTERVAL * 2)
    return sum(len(chunk) for chunk in chunks)


@shared_task(name=DRIFT_SITES_TASK, ignore_result=True, soft_time_limit=240, time_limit=270)
def drift_sites_task(site_ids: list[int]) -> dict[str, int] | None:
    """Compare each site's applied revision with its repository head and record it. A chunk cut short by
    its time limit (many unreachable sites) leaves the rest as the longest waiting of the next round."""
    try:
        return drift.drift_check_sites([int(site_id) for site_id in site_ids])
    except SoftTimeLimitExceeded:
        logger.warning("drift check of %s sites cut short by its time limit", len(site_ids))
        return None
