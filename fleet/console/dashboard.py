"""What the fleet dashboard shows, read in a fixed number of queries whatever the size of the fleet.

Counts come from the health columns (sites.health_records keeps them) grouped in the database; lists are
short and bounded (the newest few). Nothing here loops over sites or nodes.
"""

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, OuterRef, Prefetch, Q, Subquery
from django.urls import reverse
from django.utils import timezone

from fleet.workflows import RunState, StepRun, WorkflowRun
from rollouts.choices import ROLLOUT_ACTIVE_STATES, RolloutState, SiteRolloutState
from rollouts.models import Rollout, RolloutWave, SiteRollout
from sites import k3s_versions
from sites.choices import (
    NODE_HEALTH_COUNTED_STATES,
    REPLACE_KIND,
    WIPE_KIND,
    AlertKind,
    NodeHealth,
    SiteHealth,
    SiteState,
)
from sites.k3s_versions import VersionCount
from sites.models import Alert, Node, Site

LIST_LENGTH = 10
ACTIVE_ROLLOUTS_SHOWN = 8

# The steps at which a run waits for a person rather than for a machine: a replacement machine to be
# shipped and switched on, a wiped machine to be registered again, a drain that a disruption budget blocks.
PERSON_WAITS: dict[tuple[str, str], str] = {
    (REPLACE_KIND, "await_checkin"): "the replacement machine to be switched on and check in",
    (WIPE_KIND, "await_rejoin"): "the wiped machine to register again",
    (WIPE_KIND, "drain"): "a drain: pods a disruption budget protects must be moved by someone",
}
# A drain waits for a person only while a disruption budget blocks it (its wait message says so); the
# other drain waits are evictions going on.
BLOCKED_DRAIN = "PodDisruptionBudget"


@dataclass(frozen=True)
class HealthCount:
    health: str
    label: str
    count: int
    url: str


@dataclass(frozen=True)
class WaveBar:
    """A wave's counters as the segments of a bar, in percent of the wave; pending is the empty rest."""

    name: str
    state: str
    size: int
    segments: tuple[tuple[str, str, float, int], ...]  # (css class, label, percent, count)
    done: int


@dataclass(frozen=True)
class RolloutLine:
    rollout: Rollout
    waits_for: str
    waves: tuple[WaveBar, ...]


@dataclass
class Dashboard:
    sites_by_health: list[HealthCount]
    sites_total: int
    nodes_down: int
    nodes_by_health: list[HealthCount]
    node_down_alerts: int
    unreachable: int
    drifted: int
    rollouts: list[RolloutLine]
    person_waits: list[tuple[WorkflowRun, str, str]]
    approvals: list[Rollout]
    failing_sites: list[Site]
    failed_runs: list[WorkflowRun]
    failed_site_rollouts: list[SiteRollout]
    k3s_target: str = ""
    k3s_versions: list[VersionCount] = field(default_factory=list)  # the fleet's K3s versions, newest first
    k3s_behind: int = 0  # sites on a version older than the target (or never probed)
    k3s_flagged: int = 0  # sites more than the allowed skew behind
    at: dt.datetime = field(default_factory=timezone.now)


def dashboard(now: dt.datetime | None = None) -> Dashboard:
    """Everything on the home page: about a dozen queries for 40 sites or 3000."""
    now = now or timezone.now()
    site_url = reverse("admin:sites_site_changelist")
    node_url = reverse("admin:sites_node_changelist")
    in_service = Site.objects.exclude(state=SiteState.DECOMMISSIONED)
    by_health = dict(in_service.order_by().values_list("health").annotate(n=Count("*")).values_list("health", "n"))
    sites_by_health = [
        HealthCount(value, str(label), by_health.get(value, 0), f"{site_url}?health__exact={value}")
        for value, label in SiteHealth.choices
    ]
    counted = Node.objects.filter(state__in=NODE_HEALTH_COUNTED_STATES)
    node_health = dict(counted.order_by().values_list("health").annotate(n=Count("*")).values_list("health", "n"))
    nodes_by_health = [
        HealthCount(value, str(label), node_health.get(value, 0), f"{node_url}?health__exact={value}")
        for value, label in NodeHealth.choices
    ]
    versions = k3s_versions.version_distribution()  # one GROUP BY over the clusters
    target = k3s_versions.target_version()
    return Dashboard(
        k3s_target=str(target) if target else "",
        k3s_versions=versions,
        k3s_behind=sum(c.sites for c in versions if _older(c.version, target)),
        k3s_flagged=sum(c.sites for c in versions if c.flagged),
        sites_by_health=sites_by_health,
        sites_total=sum(by_health.values()),
        nodes_down=node_health.get(NodeHealth.NOT_READY, 0) + node_health.get(NodeHealth.NOT_SEEN, 0),
        nodes_by_health=nodes_by_health,
        node_down_alerts=Alert.objects.filter(kind=AlertKind.NODE_DOWN, resolved_at__isnull=True).count(),
        unreachable=by_health.get(SiteHealth.UNREACHABLE, 0),
        drifted=in_service.filter(drifted_since__isnull=False).count(),
        rollouts=active_rollouts(now),
        person_waits=person_waits(),
        approvals=list(
            Rollout.objects.filter(state=RolloutState.AWAITING_APPROVAL)
            .select_related("plan", "release__application")
            .order_by("state_changed_at")[:LIST_LENGTH]
        ),
        failing_sites=list(
            in_service.filter(health__in=(SiteHealth.UNREACHABLE, SiteHealth.DEGRADED))
            .only("id", "code", "name", "timezone", "health", "health_since", "health_reason")
            .order_by("-health_since")[:LIST_LENGTH]
        ),
        failed_runs=list(WorkflowRun.objects.filter(state=RunState.FAILED).order_by("-finished_at")[:LIST_LENGTH]),
        failed_site_rollouts=list(
            SiteRollout.objects.filter(state=SiteRolloutState.FAILED)
            .select_related("site", "rollout")
            .only("id", "error", "finished_at", "site__code", "site__timezone", "rollout__id")
            .order_by("-finished_at")[:LIST_LENGTH]
        ),
        at=now,
    )


def active_rollouts(now: dt.datetime) -> list[RolloutLine]:
    """The rollouts in progress with their waves as bars and what each waits for (two queries)."""
    rollouts = (
        Rollout.objects.filter(state__in=ROLLOUT_ACTIVE_STATES)
        .select_related("plan", "release__application")
        .prefetch_related(Prefetch("waves", queryset=RolloutWave.objects.order_by("index")))
        .order_by("-id")[:ACTIVE_ROLLOUTS_SHOWN]
    )
    lines = []
    for rollout in rollouts:
        waves = list(rollout.waves.all())
        lines.append(RolloutLine(rollout, waits_for(rollout, waves, now), tuple(wave_bar(w) for w in waves)))
    return lines


def wave_bar(wave: RolloutWave) -> WaveBar:
    size = max(wave.size, wave.total, 1)
    in_flight = wave.n_committing + wave.n_syncing + wave.n_verifying
    parts = (
        ("ok", "succeeded", wave.n_succeeded),
        ("fail", "failed", wave.n_failed),
        ("flight", "in progress", in_flight),
        ("back", "rolled back", wave.n_rolled_back),
        ("skip", "skipped", wave.n_skipped),
    )
    segments = tuple((css, label, round(100.0 * n / size, 2), n) for css, label, n in parts if n)
    return WaveBar(wave.name, wave.state, wave.size, segments, wave.done)


def waits_for(rollout: Rollout, waves: list[RolloutWave], now: dt.datetime) -> str:
    """What the rollout waits for now, in a few words."""
    current = next((w for w in waves if w.index == rollout.current_wave), None)
    name = f"wave {current.index + 1} ({current.name})" if current else "its next wave"
    if rollout.state == RolloutState.AWAITING_APPROVAL:
        return f"approval of {name} by someone allowed to approve rollouts"
    if rollout.state == RolloutState.PAUSED:
        return "a person to resume it (paused)"
    if rollout.state == RolloutState.HALTED:
        return f"a decision: roll back or cancel ({rollout.halted_reason or 'failures past the threshold'})"
    if rollout.state == RolloutState.SCHEDULED:
        return "its start time"
    if current is not None and current.bake_until and current.bake_until > now and current.closed_at is None:
        seconds = int((current.bake_until - now).total_seconds())
        return f"{name} to bake: {seconds // 60} min {seconds % 60} s left"
    if current is not None:
        in_flight = current.n_committing + current.n_syncing + current.n_verifying
        waiting = current.n_pending + current.n_waiting_window
        return f"{name}: {in_flight} site(s) applying, {waiting} to go"
    return "the driver's next step"


def person_waits() -> list[tuple[WorkflowRun, str, str]]:
    """(run, what it waits for, its last message) of the runs that wait for a person, oldest first."""
    wanted = Q()
    for kind, step in PERSON_WAITS:
        wanted |= Q(kind=kind, current_step=step)
    last_message = StepRun.objects.filter(run=OuterRef("pk")).order_by("-id").values("message")[:1]
    runs = (
        WorkflowRun.objects.filter(wanted, state=RunState.WAITING)
        .annotate(last_message=Subquery(last_message))
        .exclude(Q(kind=WIPE_KIND, current_step="drain") & ~Q(last_message__contains=BLOCKED_DRAIN))
        .order_by("updated_at")[:LIST_LENGTH]
    )
    return [(run, PERSON_WAITS[(run.kind, run.current_step)], getattr(run, "last_message", "") or "") for run in runs]


def subject_url(run: WorkflowRun) -> str:
    """The admin page of a run's subject (a site or a node), or the run's own page."""
    pages: dict[str, Any] = {"sites.site": "admin:sites_site_change", "sites.node": "admin:sites_node_change"}
    if run.subject_type in pages and run.subject_id:
        return reverse(pages[run.subject_type], args=[run.subject_id])
    return reverse("admin:workflows_workflowrun_change", args=[run.pk])


def _older(version: str, target: k3s_versions.K3sVersion | None) -> bool:
    """Behind the fleet's target: an older version, or none known yet (as sites.k3s_versions.sites_behind)."""
    parsed = k3s_versions.K3sVersion.parse(version)
    return target is not None and (parsed is None or parsed < target)
