"""One search box for the whole fleet: a site code, a restaurant name, a city, a node serial, hostname or
MAC, a rollout number or plan name. One query per kind of object, each bounded; exact matches first."""

import re
from dataclasses import dataclass

from django.db.models import Q
from django.urls import reverse

from rollouts.models import Rollout
from sites.models import Node, Site

PER_KIND = 20
_MAC_SEPARATORS = re.compile(r"[-.\s]")
_ROLLOUT = re.compile(r"^(?:rollout\s*)?#?(\d{1,9})$", re.IGNORECASE)


@dataclass(frozen=True)
class Hit:
    kind: str  # "site", "node", "rollout"
    label: str
    detail: str
    url: str
    exact: bool


def search(query: str, *, kinds: frozenset[str]) -> list[Hit]:
    """What `query` names, among the kinds of objects the person may view (`site`, `node`, `rollout`)."""
    query = query.strip()[:100]
    if not query:
        return []
    hits: list[Hit] = []
    if "site" in kinds:
        hits += _sites(query)
    if "node" in kinds:
        hits += _nodes(query)
    if "rollout" in kinds:
        hits += _rollouts(query)
    exact = [hit for hit in hits if hit.exact]
    return exact or hits


def _sites(query: str) -> list[Hit]:
    # A city is the site's `market` (the simulator's and importers' metro area) or `city` label, and is
    # usually part of the restaurant's name too.
    rows = Site.objects.filter(
        Q(code__iexact=query)
        | Q(code__istartswith=query)
        | Q(name__icontains=query)
        | Q(labels__market__icontains=query.replace(" ", "-"))
        | Q(labels__city__icontains=query)
        | Q(region__iexact=query)
    ).only("id", "code", "name", "region", "labels")[:PER_KIND]
    return [
        Hit(
            "site",
            f"{site.code} {site.name}",
            f"{site.region} {site.labels.get('city') or site.labels.get('market') or ''}".strip(),
            reverse("admin:sites_site_change", args=[site.pk]),
            site.code.lower() == query.lower(),
        )
        for site in rows
    ]


def _nodes(query: str) -> list[Hit]:
    mac = _MAC_SEPARATORS.sub(":", query.lower())
    rows = (
        Node.objects.filter(
            Q(serial__iexact=query)
            | Q(serial__istartswith=query)
            | Q(hostname__icontains=query)
            | Q(mac__startswith=mac)
        )
        .select_related("site")
        .only("id", "serial", "hostname", "mac", "state", "site__code")[:PER_KIND]
    )
    return [
        Hit(
            "node",
            f"{node.hostname} ({node.serial})",
            f"{node.site.code}, {node.state}, {node.mac or 'no MAC yet'}",
            reverse("admin:sites_node_change", args=[node.pk]),
            query.lower() in (node.serial.lower(), node.mac) or (node.mac == mac and len(mac) == 17),
        )
        for node in rows
    ]


def _rollouts(query: str) -> list[Hit]:
    number = _ROLLOUT.match(query)
    found = Q(pk=int(number.group(1))) if number else Q(plan__name__icontains=query)
    rows = Rollout.objects.filter(found).select_related("plan", "release__application").order_by("-id")[:PER_KIND]
    return [
        Hit(
            "rollout",
            f"rollout {rollout.pk}: {rollout.plan.name}",
            f"{rollout.release.application.name} {rollout.release.version}, {rollout.state}",
            reverse("admin:rollouts_rollout_change", args=[rollout.pk]),
            number is not None,
        )
        for rollout in rows
    ]
