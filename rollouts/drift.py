"""Drift: does each site run what its repository says? A periodic check compares the site's repository
head (`git ls-remote`, no clone) with the revision its GitOps agent last applied (the Flux
Kustomization status), and records the answer in SiteSyncState (and Site.last_applied_revision), and
hands the site's health what only it sees (sites.health_records.site_record_sync: drift, a failing sync,
the latest rollout's failure).

Beat runs `rollouts.drift_check` every FLEET_DRIFT_INTERVAL seconds; it picks the FLEET_DRIFT_BATCH
sites checked longest ago (never-checked first) and sends them in chunks of FLEET_DRIFT_CHUNK to
`rollouts.drift_sites` on the `io` queue, so a fleet of thousands is covered in rounds. A chunk loads
its sites in one query and checks them one after the other; the checks that find what the last one found
only move `checked_at`, all of the chunk's in one UPDATE at its end. A site that cannot be reached is
`unreachable`, not drifted: edges go offline.
"""

import datetime as dt
from collections import Counter

from django.db import transaction
from django.db.models import F, OuterRef, Subquery
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


def drift_due_chunks(*, limit: int, size: int) -> list[list[int]]:
    """The sites to check next (`drift_due_sites`) in chunks of `size`, the longest waiting first."""
    ids = drift_due_sites(limit=limit)
    return [ids[start : start + size] for start in range(0, len(ids), max(1, size))]


def drift_check_sites(site_ids: list[int]) -> dict[str, int]:
    """Check each of the sites, in the order given; how many ended in each drift state."""
    latest = SiteRollout.objects.filter(site=OuterRef("pk"), finished_at__isnull=False).order_by("-finished_at", "-pk")
    sites = (
        Site.objects.filter(pk__in=site_ids)
        .select_related("cluster", "sync_state")
        .annotate(
            latest_rollout_state=Subquery(latest.values("state")[:1]),
            latest_rollout_error=Subquery(latest.values("error")[:1]),
        )
    )
    order = {site_id: position for position, site_id in enumerate(site_ids)}
    states: Counter[str] = Counter()
    unchanged: list[SiteSyncState] = []
    try:
        for site in sorted(sites, key=lambda site: order[site.pk]):
            states[drift_check_site(site, unchanged=unchanged).state] += 1
    finally:  # what was checked is recorded, even when the task's time limit cut the chunk short
        SiteSyncState.objects.bulk_update(unchanged, ["checked_at"])
    return dict(states)


def drift_check_site(site: Site, *, unchanged: list[SiteSyncState] | None = None) -> SiteSyncState:
    """Read the site's repository head and applied revision and record how they compare (`unchanged`:
    see site_sync_state_record)."""
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
        site=site, state=state, head=head, applied=applied, message=message, sync_error=sync_error, unchanged=unchanged
    )


def site_sync_state_record(
    *,
    site: Site,
    state: str,
    head: str,
    applied: str,
    message: str,
    sync_error: str = "",
    unchanged: list[SiteSyncState] | None = None,
) -> SiteSyncState:
    """Upsert the site's drift row (keeping when it started drifting) and its last applied revision.
    When nothing differs from the last check, only `checked_at` moves: at once (one UPDATE), or, given an
    `unchanged` list, the row joins it for its caller to write the whole chunk's in one UPDATE."""
    now = timezone.now()
    message, sync_error = message[:500], sync_error[:500]
    rollout_error = _last_rollout_error(site) if state in (DriftState.IN_SYNC, DriftState.DRIFTED) else ""
    last = _recorded_row(site) if _loaded_for_check(site) else None
    if last is not None and _same_as_last(site, last, state, head, applied, message, sync_error, rollout_error):
        last.checked_at = now
        if unchanged is None:
            SiteSyncState.objects.filter(pk=last.pk).update(checked_at=now)
        else:
            unchanged.append(last)
        return last
    with transaction.atomic():
        row, _ = SiteSyncState.objects.select_for_update().get_or_create(site=site)
        drifted_since: dt.datetime | None = None
        if state == DriftState.DRIFTED:
            drifted_since = row.drifted_since if row.state == DriftState.DRIFTED and row.drifted_since else now
        elif state != DriftState.IN_SYNC:
            drifted_since = row.drifted_since  # unknown/unreachable says nothing new about drift
        row.state, row.head_revision, row.applied_revision = state, head, applied
        row.message, row.checked_at, row.drifted_since = message, now, drifted_since
        row.save()
        if applied:
            Site.objects.filter(pk=site.pk).exclude(last_applied_revision=applied).update(last_applied_revision=applied)
        if state in (DriftState.IN_SYNC, DriftState.DRIFTED):  # unreachable/unknown: the probe's to say
            health_records.site_record_sync(
                site=site, head=head, drifted_since=drifted_since, sync_error=sync_error, rollout_error=rollout_error
            )
    return row


def _loaded_for_check(site: Site) -> bool:
    """Whether the site was read by `drift_check_sites` for this check (with its drift row and latest
    rollout), so that comparing with what it holds compares with what is recorded."""
    return hasattr(site, "latest_rollout_state")


def _recorded_row(site: Site) -> SiteSyncState | None:
    try:
        return site.sync_state
    except SiteSyncState.DoesNotExist:
        return None


def _same_as_last(
    site: Site, last: SiteSyncState, state: str, head: str, applied: str, message: str, sync_error: str, error: str
) -> bool:
    """Whether this check found exactly what the last one recorded, so that nothing but `checked_at` would
    change. A drifted site is always recorded again: its health turns once the drift outlasts the grace."""
    if (last.state, last.head_revision, last.applied_revision, last.message) != (state, head, applied, message):
        return False
    if state == DriftState.DRIFTED:
        return False
    if state != DriftState.IN_SYNC:
        return True  # unreachable/unknown: the row is all it writes
    recorded = (site.repo_head_revision, site.drifted_since, site.sync_error, site.rollout_error)
    return recorded == (head[:64], None, sync_error, error[:500]) and (
        not applied or site.last_applied_revision == applied
    )


def _last_rollout_error(site: Site) -> str:
    """Why the site's latest finished rollout failed here ("" when it did not fail): part of its health.
    Read from the annotations `drift_check_sites` adds when the site came from there."""
    if _loaded_for_check(site):
        state, error = getattr(site, "latest_rollout_state", "") or "", getattr(site, "latest_rollout_error", "") or ""
        return (error or "failed") if state == SiteRolloutState.FAILED else ""
    latest = SiteRollout.objects.filter(site=site, finished_at__isnull=False).order_by("-finished_at", "-pk")
    state, error = latest.values_list("state", "error").first() or ("", "")
    return (error or "failed") if state == SiteRolloutState.FAILED else ""
