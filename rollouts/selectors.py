"""Reads of releases and rollouts that are more than a one-line filter."""

import datetime as dt
import json
from collections.abc import Iterable

from django.db.models import Prefetch, QuerySet

from fleet.errors import Invalid
from rollouts.choices import SITE_IN_FLIGHT_STATES, SITE_NOT_STARTED_STATES, SiteRolloutState
from rollouts.models import DryRun, Rollout, RolloutPlan, RolloutWave, SiteRollout
from rollouts.planning import snapshot_number, snapshot_site_deadline, snapshot_threshold
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


def release_check_sites(limit: int) -> list[Site]:
    """Up to `limit` real sites to render a new release for (rollouts.rendering): the first site of every
    region, then the first of every other label set, by code; decommissioned sites left out. One query
    over the fleet's codes, regions and labels, then the chosen sites in one more."""
    if limit <= 0:
        return []
    rows = list(
        Site.objects.exclude(state=SiteState.DECOMMISSIONED).order_by("code").values_list("code", "region", "labels")
    )
    chosen: dict[str, None] = {}
    regions: set[str] = set()
    label_sets: set[str] = set()
    for code, region, labels in rows:
        if region not in regions:
            regions.add(region)
            label_sets.add(json.dumps(labels, sort_keys=True))
            chosen[code] = None
    for code, _, labels in rows:
        key = json.dumps(labels, sort_keys=True)
        if key not in label_sets:
            label_sets.add(key)
            chosen[code] = None
    codes = list(chosen)[:limit]
    return list(Site.objects.filter(code__in=codes).only(*SITE_FIELDS_FOR_PLANNING).order_by("code"))


def latest_dry_run(plan: RolloutPlan) -> DryRun | None:
    """The plan's newest dry run, running or finished."""
    return DryRun.objects.select_related("release__application", "run", "requested_by").filter(plan=plan).first()


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
    return RolloutPlan.objects.select_related("release__application", "created_by", "last_edited_by", "low_risk_by")


# With windows, how many not-started sites past the free slots one decision checks (each check computes
# the site's local time): the rest are looked at as the wave moves on.
WINDOW_SCAN_EXTRA = 200


def rollout_progress_view(rollout: Rollout, at: dt.datetime) -> RolloutView:
    """The rollout as rollouts.progress.decide sees it: every wave's counters, and for the open wave only
    the sites a decision can act on (see WaveView): a few queries whatever the size of the wave."""
    snapshot = rollout.plan_snapshot
    respect = bool(snapshot.get("respect_windows"))
    max_parallel = snapshot_number(snapshot, "max_parallel", 1)
    deadline = snapshot_site_deadline(snapshot)
    waves = list(rollout.waves.order_by("index"))
    sites: dict[int, tuple[SiteView, ...]] = {}
    failed: dict[int, tuple[tuple[str, str], ...]] = {}
    current = next((w for w in waves if w.index == rollout.current_wave), None)
    if current is not None and current.opened_at is not None and current.closed_at is None:
        sites[current.pk] = _decidable_sites(
            current, max_parallel=max_parallel, respect_windows=respect, deadline_seconds=deadline, at=at
        )
        if current.n_failed:
            failed[current.pk] = failed_sites(current)
    return RolloutView(
        state=rollout.state,
        current_wave=rollout.current_wave,
        waves=tuple(
            WaveView(
                index=w.index,
                name=w.name,
                sites=sites.get(w.pk, ()),
                opened_at=w.opened_at,
                closed_at=w.closed_at,
                bake_until=w.bake_until,
                approved_at=w.approved_at,
                state_counts=w.counts,
                skipped_counts=w.skipped_counts,
                failed_sites=failed.get(w.pk, ()),
            )
            for w in waves
        ),
        max_parallel=max_parallel,
        failure_threshold=snapshot_threshold(snapshot),
        bake_seconds=snapshot_number(snapshot, "bake_seconds", 0),
        require_approval=bool(snapshot.get("require_approval")),
        approve_first_wave=bool(snapshot.get("approve_first_wave")),
        respect_windows=respect,
        auto_rollback=bool(snapshot.get("auto_rollback")),
        site_deadline_seconds=deadline,
        rollback_requested=rollout.rollback_requested_at is not None,
        allow_unreachable_waves=bool(snapshot.get("allow_unreachable_waves")),
    )


# Failed sites a halt reason names (the rest are on the rollout's page).
FAILED_SITES_NAMED = 5


def failed_sites(wave: RolloutWave) -> tuple[tuple[str, str], ...]:
    """The first failed sites of a wave with their errors (code, error), in the order they failed."""
    rows = (
        SiteRollout.objects.filter(wave=wave, state=SiteRolloutState.FAILED)
        .order_by("finished_at", "position")
        .values_list("site__code", "error")[:FAILED_SITES_NAMED]
    )
    return tuple((code, error) for code, error in rows)


def _decidable_sites(
    wave: RolloutWave, *, max_parallel: int, respect_windows: bool, deadline_seconds: int, at: dt.datetime
) -> tuple[SiteView, ...]:
    """The sites of the open wave a decision can act on, in two or three short reads:

    - the in-flight site that started first (when the next deadline falls), and when that one is past
      its deadline, every in-flight site past it (to skip) and the oldest of the others;
    - the not-started sites in planned order, as many as there are free slots, or with windows that many
      plus WINDOW_SCAN_EXTRA (a closed window takes no slot), one (wave, state, position) index range
      per state, merged.
    """
    fields = (
        "state",
        "started_at",
        "position",
        "workflow_run_id",
        *(f"site__{f}" for f in SITE_FIELDS_FOR_PLANNING),
    )
    rows = SiteRollout.objects.filter(wave=wave).select_related("site").only(*fields)
    flying = rows.filter(state__in=SITE_IN_FLIGHT_STATES)
    overdue_before = at - dt.timedelta(seconds=deadline_seconds)
    chosen = list(flying.order_by("started_at")[:1])
    if chosen and chosen[0].started_at is not None and chosen[0].started_at < overdue_before:
        chosen = list(flying.filter(started_at__lt=overdue_before).order_by("position"))
        chosen += list(flying.filter(started_at__gte=overdue_before).order_by("started_at")[:1])
    in_flight = wave.n_committing + wave.n_syncing + wave.n_verifying + wave.n_unreachable
    wanted = max(max_parallel - in_flight, 0) + (WINDOW_SCAN_EXTRA if respect_windows else 0)
    # Without windows no site ever waits for one: only `pending` needs reading.
    states = SITE_NOT_STARTED_STATES if respect_windows else {SiteRolloutState.PENDING}
    if wanted:
        waiting = [row for state in sorted(states) for row in rows.filter(state=state).order_by("position")[:wanted]]
        chosen += sorted(waiting, key=lambda row: row.position)[:wanted]
    reached = _reached(row for row in chosen if row.started_at is not None and row.started_at < overdue_before)
    views = []
    for row in chosen:
        open_now = site_window_open(row.site, at) if respect_windows and row.state in SITE_NOT_STARTED_STATES else True
        views.append(
            SiteView(
                code=row.site.code,
                state=row.state,
                window_open=open_now,
                next_window_at=None if open_now else site_next_open(row.site, at),
                started_at=row.started_at,
                reached=row.pk in reached,
            )
        )
    return tuple(views)


def _reached(overdue: Iterable[SiteRollout]) -> set[int]:
    """Which of these in-flight sites past their deadline were reached: the edge applied the commit
    (verifying), or the site's run recorded that the site answered after the push (`reached_at` in
    its context, set by the converge step). Read only for sites past their deadline: a few rows."""
    rows = list(overdue)
    reached = {row.pk for row in rows if row.state == SiteRolloutState.VERIFYING}
    asked = [row.pk for row in rows if row.pk not in reached and row.workflow_run_id]
    if asked:
        for pk, context in SiteRollout.objects.filter(pk__in=asked).values_list("pk", "workflow_run__context"):
            if isinstance(context, dict) and context.get("reached_at"):
                reached.add(pk)
    return reached
