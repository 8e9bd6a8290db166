"""Drift: does each site run what its repository says? A periodic check compares the site's repository
head (`git ls-remote`, no clone) with the revision its GitOps agent last applied (the Flux
Kustomization status), and records the answer in SiteSyncState (and Site.last_applied_revision), and
hands the site's health what only it sees (sites.health_records.site_record_sync: drift, a failing sync,
the latest rollout's failure).

Beat runs `rollouts.drift_check` every FLEET_DRIFT_INTERVAL seconds; it picks the FLEET_DRIFT_BATCH
sites checked longest ago (never-checked first) and sends one `rollouts.drift_site` task per site on
the `io` queue, so a fleet of thousands is covered in rounds and no task talks to more than one site.
A site that cannot be reached is `unreachable`, not drifted: edges go offline.
"""

import datetime as dt

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from rollouts.choices import DriftState, SiteRolloutState
from rollouts.models import SiteRollout, SiteSyncState
from sites import health_records
from sites.choices import SiteState
from sites.clusters import ClusterError, SiteCluster, revision_sha
from sites.models import Cluster, Site
from sites.repos import RepoFailure, SiteRepo


def drift_due_sites(*, limit: int) -> list[int]:
    """Ids of the sites to check next: never checked first, then the longest ago."""
    sites = (
        Site.objects.exclude(state=SiteState.DECOMMISSIONED)
        .order_by(F("sync_state__checked_at").asc(nulls_first=True), "pk")
        .values_list("pk", flat=True)
    )
    return list(sites[:limit])


def drift_check_site(site: Site) -> SiteSyncState:
    """Read the site's repository head and applied revision and record how they compare."""
    head = applied = message = sync_error = ""
    state = DriftState.UNKNOWN
    try:
        head = SiteRepo.for_site(site).head() or ""
    except RepoFailure as exc:
        message = f"repository: {exc}"
    if not message:
        try:
            status = SiteCluster.for_cluster(site.cluster).sync_status()
        except (ClusterError, Cluster.DoesNotExist) as exc:
            state, message = DriftState.UNREACHABLE, f"cluster: {exc}"
        else:
            if status is None:
                message = "the site has no GitOps status"
            else:
                applied = revision_sha(status.last_applied_revision)
                message = status.message
                sync_error = (status.message or status.reason) if status.ready is False else ""
                in_sync = bool(head) and applied == head and status.ready is True
                state = DriftState.IN_SYNC if in_sync else DriftState.DRIFTED
                if not head and not applied:
                    state = DriftState.IN_SYNC  # an empty repository, nothing applied: nothing to drift from
    return site_sync_state_record(
        site=site, state=state, head=head, applied=applied, message=message, sync_error=sync_error
    )


def site_sync_state_record(
    *, site: Site, state: str, head: str, applied: str, message: str, sync_error: str = ""
) -> SiteSyncState:
    """Upsert the site's drift row (keeping when it started drifting) and its last applied revision."""
    now = timezone.now()
    with transaction.atomic():
        row, _ = SiteSyncState.objects.select_for_update().get_or_create(site=site)
        drifted_since: dt.datetime | None = None
        if state == DriftState.DRIFTED:
            drifted_since = row.drifted_since if row.state == DriftState.DRIFTED and row.drifted_since else now
        elif state != DriftState.IN_SYNC:
            drifted_since = row.drifted_since  # unknown/unreachable says nothing new about drift
        row.state, row.head_revision, row.applied_revision = state, head, applied
        row.message, row.checked_at, row.drifted_since = message[:500], now, drifted_since
        row.save()
        if applied:
            Site.objects.filter(pk=site.pk).exclude(last_applied_revision=applied).update(last_applied_revision=applied)
        if state in (DriftState.IN_SYNC, DriftState.DRIFTED):  # unreachable/unknown: the probe's to say
            health_records.site_record_sync(
                site=site,
                head=head,
                drifted_since=drifted_since,
                sync_error=sync_error,
                rollout_error=_last_rollout_error(site),
            )
    return row


def _last_rollout_error(site: Site) -> str:
    """Why the site's latest finished rollout failed here ("" when it did not fail): part of its health."""
    latest = SiteRollout.objects.filter(site=site, finished_at__isnull=False).order_by("-finished_at", "-pk")
    state, error = latest.values_list("state", "error").first() or ("", "")
    return (error or "failed") if state == SiteRolloutState.FAILED else ""
