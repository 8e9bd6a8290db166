"""Reads of sites and nodes that are more than a one-line filter."""

from django.db.models import Count, Q, QuerySet

from sites.choices import NodeState, SiteState
from sites.labels import LabelSelector
from sites.models import Node, Site


def sites_to_probe() -> QuerySet[Site]:
    """Sites with cluster credentials that are not decommissioned."""
    return Site.objects.exclude(state=SiteState.DECOMMISSIONED).exclude(cluster__credentials_encrypted="")


def site_list() -> QuerySet[Site]:
    """Sites with their cluster and node counts, one query for the whole page."""
    return Site.objects.select_related("cluster").annotate(
        node_count=Count("nodes", filter=~Q(nodes__state=NodeState.RETIRED)),
        active_node_count=Count("nodes", filter=Q(nodes__state=NodeState.ACTIVE)),
    )


def node_list() -> QuerySet[Node]:
    return Node.objects.select_related("site")


def sites_matching(selector: str, queryset: QuerySet[Site] | None = None) -> QuerySet[Site]:
    """Sites whose labels match a Kubernetes-style selector (`k=v,k2 in (a,b),!k3`)."""
    return LabelSelector.parse(selector).filter(queryset if queryset is not None else Site.objects.all())
