"""Celery tasks of the rollouts app: thin doors that take ids, re-read rows and call services."""

import logging

from celery import shared_task

from fleet.errors import FleetError
from rollouts import services
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
        rollout = services.rollout_start(plan=plan, actor="system:beat", source="beat")
    except FleetError as exc:
        logger.warning("scheduled start of rollout plan %s (%s) refused: %s", plan.pk, plan.name, exc.message)
        return None
    return rollout.pk
