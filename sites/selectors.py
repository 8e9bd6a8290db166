"""Reads of sites and nodes that are more than a one-line filter."""

from django.db.models import Count, F, OuterRef, QuerySet, Subquery, Window
from django.db.models.functions import Coalesce, RowNumber
from django.utils import timezone

from sites.choices import NodeState, SiteState
from sites.crypto import hash_secret
from sites.heartbeats import latest_acceptable_taken_at
from sites.labels import LabelSelector
from sites.models import Alert, Backup, Node, NodeCredential, Site


def sites_to_probe() -> QuerySet[Site]:
    """Sites with cluster credentials that are not decommissioned."""
    return Site.objects.exclude(state=SiteState.DECOMMISSIONED).exclude(cluster__credentials_encrypted="")


def site_list() -> QuerySet[Site]:
    """Sites with their cluster and node counts, one query for the whole page. The counts are correlated
    subqueries, not a join and GROUP BY: the database counts the nodes of the page's rows only, and the
    list's row count (which does not use them) leaves them out, so a page costs the same at 3000 sites."""
    nodes = Node.objects.filter(site=OuterRef("pk")).order_by().values("site")
    return Site.objects.select_related("cluster").annotate(
        node_count=Coalesce(Subquery(nodes.exclude(state=NodeState.RETIRED).annotate(n=Count("id")).values("n")), 0),
        active_node_count=Coalesce(
            Subquery(nodes.filter(state=NodeState.ACTIVE).annotate(n=Count("id")).values("n")), 0
        ),
    )


def node_list() -> QuerySet[Node]:
    return Node.objects.select_related("site")


def alert_list() -> QuerySet[Alert]:
    """Alerts with their site and node, one query for the whole page."""
    return Alert.objects.select_related("site", "node")


def sites_matching(selector: str, queryset: QuerySet[Site] | None = None) -> QuerySet[Site]:
    """Sites whose labels match a Kubernetes-style selector (`k=v,k2 in (a,b),!k3`)."""
    return LabelSelector.parse(selector).filter(queryset if queryset is not None else Site.objects.all())


def node_credential_for_token(plaintext: str) -> NodeCredential | None:
    """The active credential a machine presents, with its node and site (one query), or None."""
    return (
        NodeCredential.objects.select_related("node__site")
        .filter(token_hash=hash_secret(plaintext), revoked_at__isnull=True)
        .exclude(node__state=NodeState.RETIRED)
        .first()
    )


def latest_backups(site: Site) -> dict[str, Backup]:
    """The newest backup of each application at `site`: what the re-hydration step restores. A backup
    claiming to be taken in the future (refused on report; a row from before that rule) never wins."""
    newest_first = Window(RowNumber(), partition_by=[F("application")], order_by=[F("taken_at").desc(), F("id").desc()])
    rows = (
        Backup.objects.filter(site=site, taken_at__lte=latest_acceptable_taken_at(timezone.now()))
        .select_related("site", "reported_by")
        .annotate(rank=newest_first)
        .filter(rank=1)
        .order_by("application")
    )
    return {backup.application: backup for backup in rows}


def backups_of(site: Site) -> QuerySet[Backup]:
    """Every backup recorded for a site, newest first per application."""
    return (
        Backup.objects.filter(site=site)
        .select_related("site", "reported_by")
        .order_by("application", "-taken_at", "-id")
    )
