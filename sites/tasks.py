"""Celery tasks of the sites app: thin doors that take ids, re-read rows and call services."""

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from sites import probing, selectors
from sites.models import Site

logger = logging.getLogger(__name__)


@shared_task(name="sites.probe", soft_time_limit=60, time_limit=90)
def site_probe_task(site_id: int) -> None:
    """Probe one site's cluster; a site deleted since the message was sent is ignored."""
    site = Site.objects.filter(pk=site_id).first()
    if site is not None:
        probing.site_probe(site=site)


@shared_task(name="sites.probe_all")
def site_probe_all_task() -> int:
    """Beat: send every site that has cluster credentials to be probed, in chunks (one message each)."""
    ids = list(selectors.sites_to_probe().order_by("pk").values_list("pk", flat=True))
    size = max(1, settings.FLEET_PROBE_CHUNK)
    for start in range(0, len(ids), size):
        sites_probe_task.apply_async(args=(ids[start : start + size],), expires=settings.FLEET_PROBE_INTERVAL)
    return len(ids)


@shared_task(name="sites.probe_sites", soft_time_limit=240, time_limit=270)
def sites_probe_task(site_ids: list[int]) -> int | None:
    """Probe each of the sites; a chunk cut short by its time limit leaves the rest to the next round."""
    try:
        return probing.sites_probe([int(site_id) for site_id in site_ids])
    except SoftTimeLimitExceeded:
        logger.warning("probe of %s sites cut short by its time limit", len(site_ids))
        return None
