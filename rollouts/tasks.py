"""Celery tasks of the rollouts app: thin doors that take ids, re-read rows and call services."""

import logging

from celery import shared_task
from django.conf import settings

from fleet.audit.choices import Source, SystemActor
from fleet.errors import FleetError
from rollouts import drift, services
from rollouts.models import RolloutPlan
from sites.models import Site

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


DRIFT_SITE_TASK = "rollouts.drift_site"


@shared_task(name="rollouts.drift_check", ignore_result=True)
def drift_check_task() -> int:
    """Beat: send a drift check for the FLEET_DRIFT_BATCH sites checked longest ago (to the io queue)."""
    site_ids = drift.drift_due_sites(limit=int(getattr(settings, "FLEET_DRIFT_BATCH", 500)))
    for site_id in site_ids:
        drift_site_task.apply_async(args=(site_id,), expires=int(getattr(settings, "FLEET_DRIFT_INTERVAL", 60)) * 2)
    return len(site_ids)


@shared_task(name=DRIFT_SITE_TASK, ignore_result=True, soft_time_limit=60, time_limit=90)
def drift_site_task(site_id: int) -> str | None:
    """Compare one site's applied revision with its repository head and record it."""
    site = Site.objects.select_related("cluster").filter(pk=site_id).first()
    if site is None:
        return None
    return drift.drift_check_site(site).state
