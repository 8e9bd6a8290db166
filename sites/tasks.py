"""Celery tasks of the sites app: thin doors that take ids, re-read rows and call services."""

from celery import shared_task

from sites import probing, selectors
from sites.models import Site


@shared_task(name="sites.probe", soft_time_limit=60, time_limit=90)
def site_probe_task(site_id: int) -> None:
    """Probe one site's cluster; a site deleted since the message was sent is ignored."""
    site = Site.objects.filter(pk=site_id).first()
    if site is not None:
        probing.site_probe(site=site)


@shared_task(name="sites.probe_all")
def site_probe_all_task() -> int:
    """Beat: queue a probe for every site that has cluster credentials."""
    ids = list(selectors.sites_to_probe().values_list("pk", flat=True))
    for site_id in ids:
        site_probe_task.delay(site_id)
    return len(ids)
