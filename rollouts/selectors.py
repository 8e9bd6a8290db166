"""Reads of releases and rollouts that are more than a one-line filter."""

import datetime as dt

from django.db.models import Prefetch, QuerySet

from fleet.errors import Invalid
from rollouts.models import Rollout, RolloutPlan, RolloutWave, SiteRollout
from rollouts.progress import RolloutView, SiteView, WaveView
from rollouts.schedule import site_next_open, site_window_open
from sites.choices import SiteState
from sites.labels import LabelSelector
from sites.models import Site

SITE_FIELDS_FOR_PLANNING = (
    "id",
    "code",
    "name",
    "region",
    "timezone",
    "labels",
    "business_hours",
    "maintenance_windows",
)


def plan_target_sites(target: dict) -> list[Site]:
    """The sites a plan's target names, decommissioned ones left out, ordered by code.

    Explicit codes that name no site raise Invalid listing them (a typo must not shrink a rollout).
    """
    sites = Site.objects.exclude(state=SiteState.DECOMMISSIONED).only(*SITE_FIELDS_FOR_PLANNING).order_by("code")
    if "labels" in target:
        return list(LabelSelector.parse(target["labels"]).filter(sites))
    if "sites" in target:
        codes = list(target["sites"])
        unknown_site_codes(codes, field="target")
        return list(sites.filter(code__in=codes))
    return list(sites)


def unknown_site_codes(codes: list[str], *, field: str) -> None:
    """Raise Invalid listing the codes that name no site at all."""
    known = set(Site.objects.filter(code__in=codes).values_list("code", flat=True))
    unknown = sorted(set(codes) - known)
    if unknown:
        shown = ", ".join(unknown[:20]) + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else "")
        raise Invalid(f"unknown site codes: {shown}", field=field)


def rollout_list() -> QuerySet[Rollout]:
    """Rollouts with their plan, release, starter and waves: a constant number of queries per page."""
    return Rollout.objects.select_related("plan", "release__application", "started_by", "approved_by").prefetch_related(
        Prefetch("waves", queryset=RolloutWave.objects.order_by("index"))
    )


def site_rollout_list(rollout: Rollout) -> QuerySet[SiteRollout]:
    return SiteRollout.objects.filter(rollout=rollout).select_related("site", "wave")


def plan_list() -> QuerySet[RolloutPlan]:
    return RolloutPlan.objects.select_related("release__application", "created_by")


def rollout_progress_view(rollout: Rollout, at: dt.datetime) -> RolloutView:
    """The rollout as rollouts.progress.decide sees it, read in three queries."""
    snapshot = rollout.plan_snapshot
    waves = list(rollout.waves.order_by("index"))
    rows = (
        SiteRollout.objects.filter(rollout=rollout)
        .select_related("site")
        .only("state", "started_at", "wave_id", "position", *(f"site__{f}" for f in SITE_FIELDS_FOR_PLANNING))
        .order_by("position")
    )
    by_wave: dict[int, list[SiteView]] = {wave.pk: [] for wave in waves}
    respect = bool(snapshot.get("respect_windows"))
    for row in rows:
        open_now = site_window_open(row.site, at) if respect else True
        by_wave[row.wave_id].append(
            SiteView(
                code=row.site.code,
                state=row.state,
                window_open=open_now,
                next_window_at=None if open_now else site_next_open(row.site, at),
                started_at=row.started_at,
            )
        )
    return RolloutView(
        state=rollout.state,
        current_wave=rollout.current_wave,
        waves=tuple(
            WaveView(
                index=w.index,
                name=w.name,
                sites=tuple(by_wave[w.pk]),
                opened_at=w.opened_at,
                closed_at=w.closed_at,
                bake_until=w.bake_until,
                approved_at=w.approved_at,
            )
            for w in waves
        ),
        max_parallel=int(snapshot.get("max_parallel", 1)),
        failure_threshold=dict(snapshot.get("failure_threshold") or {"count": 0}),
        bake_seconds=int(snapshot.get("bake_seconds", 0)),
        require_approval=bool(snapshot.get("require_approval")),
        respect_windows=respect,
        auto_rollback=bool(snapshot.get("auto_rollback")),
        site_deadline_seconds=int(snapshot.get("site_deadline_seconds", 6 * 3600)),
        rollback_requested=rollout.rollback_requested_at is not None,
    )
