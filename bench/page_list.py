"""What bench/pages.py fetches: the console's pages, the rollout list and page, and the REST API's lists with
their typical filters and a second page, each as (name, address); addresses naming a row of the generated
fleet are filled in by `resolve` once the fleet exists."""

from typing import Any
from urllib.parse import urlsplit

PAGES = [
    ("dashboard", "/admin/"),
    ("dashboard fragment", "/admin/console/live/"),
    ("search (several)", "/admin/console/search/?q=Lyon"),
    ("site list", "/admin/sites/site/"),
    ("site list, unreachable", "/admin/sites/site/?health__exact=unreachable"),
    ("site list, k3s behind", "/admin/sites/site/?k3s=behind"),
    ("node list", "/admin/sites/node/"),
    ("node list, not seen", "/admin/sites/node/?health__exact=not_seen"),
    ("alert list", "/admin/sites/alert/"),
    ("cluster list", "/admin/sites/cluster/"),
    ("site page", "{site_page}"),
    ("site page fragment", "{site_live}"),
    ("node page", "{node_page}"),
    ("rollout list", "/admin/rollouts/rollout/"),
    ("rollout page", "{rollout_page}"),
    ("rollout page fragment", "{rollout_live}"),
    ("site-rollout list", "/admin/rollouts/siterollout/?rollout__id__exact={rollout}"),
    ("site-rollout list, failed", "/admin/rollouts/siterollout/?rollout__id__exact={rollout}&state__exact=failed"),
    ("API sites", "/api/v1/sites/"),
    ("API sites, page 2", "{next:/api/v1/sites/}"),
    ("API sites, unreachable", "/api/v1/sites/?health=unreachable"),
    ("API sites, region+labels", "/api/v1/sites/?region=eu-west&labels=tier%3D1"),
    ("API sites, by health", "/api/v1/sites/?ordering=health"),
    ("API site", "/api/v1/sites/{site}/"),
    ("API nodes", "/api/v1/nodes/"),
    ("API nodes, page 2", "{next:/api/v1/nodes/}"),
    ("API nodes, not seen", "/api/v1/nodes/?health=not_seen"),
    ("API nodes, of a site", "/api/v1/nodes/?site={site}"),
    ("API nodes, region", "/api/v1/nodes/?region=eu-west&role=agent"),
    ("API alerts", "/api/v1/alerts/"),
    ("API alerts, open", "/api/v1/alerts/?open=true"),
    ("API rollouts", "/api/v1/rollouts/"),
    ("API rollouts, running", "/api/v1/rollouts/?state=running"),
    ("API rollout", "/api/v1/rollouts/{rollout}/"),
    ("API rollout sites", "/api/v1/rollouts/{rollout}/sites/"),
    ("API rollout sites, p. 2", "{next:/api/v1/rollouts/{rollout}/sites/}"),
    ("API rollout sites, failed", "/api/v1/rollouts/{rollout}/sites/?state=failed"),
    ("API rollout sites, wave", "/api/v1/rollouts/{rollout}/sites/?wave=2&region=eu-west"),
    ("API site-rollout", "/api/v1/site-rollouts/{site_rollout}/"),
    ("API k3s-versions", "/api/v1/k3s-versions/"),
    ("API k3s-versions, region", "/api/v1/k3s-versions/?region=eu-west&flagged=true"),
]


def resolve(client: Any) -> dict[str, str]:
    """Every page's address in the fleet now in the database (GN-00001, its first node, the rollout)."""
    from rollouts.models import Rollout, SiteRollout
    from sites.models import Node, Site

    site = Site.objects.get(code="GN-00001")
    node = Node.objects.filter(site=site).order_by("pk").first()
    rollout = Rollout.objects.order_by("pk").first()
    site_rollout = SiteRollout.objects.filter(rollout=rollout, site=site).first()
    assert node is not None and rollout is not None and site_rollout is not None  # noqa: S101 (a bench)
    names = {
        "site": site.code,
        "site_page": f"/admin/sites/site/{site.pk}/change/",
        "site_live": f"/admin/sites/site/{site.pk}/live/",
        "node_page": f"/admin/sites/node/{node.pk}/change/",
        "rollout": str(rollout.pk),
        "rollout_page": f"/admin/rollouts/rollout/{rollout.pk}/change/",
        "rollout_live": f"/admin/rollouts/rollout/{rollout.pk}/live/",
        "site_rollout": str(site_rollout.pk),
    }
    addresses = {}
    for name, page in PAGES:
        if page.startswith("{next:"):
            first = page[len("{next:") : -1].format(**names)
            following = urlsplit(client.get(first).json()["next"] or first)  # a fleet of one page: the first
            addresses[name] = f"{following.path}?{following.query}"
        else:
            addresses[name] = page.format(**names)
    return addresses
