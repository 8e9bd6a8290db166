"""A site's 360° page, read in a fixed number of queries: its nodes with health and role, each application's
release and the revision applied, drift, the rollouts that touched it, its runs and those of its nodes as
one timeline, its open alerts and its audit trail. Every list is bounded (the newest few)."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import OuterRef, Q, Subquery

from fleet.audit.models import AuditEvent
from fleet.workflows import StepRun, WorkflowRun, runs_of
from rollouts.choices import SiteRolloutState
from rollouts.models import SiteRollout, SiteSyncState
from sites.models import Alert, Node, Site

TIMELINE_LENGTH = 30
AUDIT_LENGTH = 30
ROLLOUTS_SHOWN = 20
# SiteRollouts read to find each application's latest release at the site (newest first).
APPLIED_SCAN = 200


@dataclass(frozen=True)
class AppRelease:
    application: str
    version: str
    revision: str
    rollout_id: int
    state: str
    finished_at: Any


@dataclass
class SiteOverview:
    site: Site
    nodes: list[Node]
    alerts: list[Alert]
    sync: SiteSyncState | None
    applications: list[AppRelease]
    rollouts: list[SiteRollout]
    runs: Sequence[WorkflowRun]
    audit: list[AuditEvent]


def site_overview(site: Site) -> SiteOverview:
    """Everything on the site page (about nine queries, whatever the site's history)."""
    nodes = list(Node.objects.filter(site=site).order_by("state", "hostname"))
    alerts = list(Alert.objects.filter(site=site, resolved_at__isnull=True).select_related("node").order_by("-id")[:20])
    sync = SiteSyncState.objects.filter(site=site).first()
    touched = (
        SiteRollout.objects.filter(site=site)
        .select_related("rollout__plan", "rollout__release__application", "wave")
        .order_by("-id")
    )
    rollouts = list(touched[:ROLLOUTS_SHOWN])
    applications: dict[str, AppRelease] = {}
    applied = touched.filter(state=SiteRolloutState.SUCCEEDED)[:APPLIED_SCAN]
    for row in applied:
        release = row.rollout.release
        applications.setdefault(
            release.application.name,
            AppRelease(
                release.application.name, release.version, row.revision, row.rollout_id, row.state, row.finished_at
            ),
        )
    # Each run with its latest step's message ("waiting for the replacement to check in"), in the same query.
    latest = StepRun.objects.filter(run=OuterRef("pk")).order_by("-id").values("message")[:1]
    runs = list(
        (runs_of(site) | runs_of(Node.objects.filter(site=site)))
        .annotate(last_message=Subquery(latest))
        .order_by("-id")[:TIMELINE_LENGTH]
    )
    node_ids = [str(node.pk) for node in nodes]
    about = Q(object_type="sites.site", object_id=str(site.pk)) | Q(object_type="sites.node", object_id__in=node_ids)
    cluster = getattr(site, "cluster", None)
    if cluster is not None:
        about |= Q(object_type="sites.cluster", object_id=str(cluster.pk))
    audit = list(AuditEvent.objects.filter(about).order_by("-id")[:AUDIT_LENGTH])
    return SiteOverview(
        site=site,
        nodes=nodes,
        alerts=alerts,
        sync=sync,
        applications=sorted(applications.values(), key=lambda app: app.application),
        rollouts=rollouts,
        runs=runs,
        audit=audit,
    )
