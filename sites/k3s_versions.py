"""The fleet's K3s versions: parsing (`v1.31.4+k3s1`), the version policy (a fleet-wide target,
FLEET_K3S_TARGET_VERSION, and how many minor versions behind it a site may be, FLEET_K3S_ALLOWED_MINOR_SKEW),
and the reads behind the admin and API: the distribution of versions and the sites behind the target.

A site's version is what its last probe read from its API (`Cluster.k3s_version`, the server's /version).
K3s supports upgrading one minor version at a time and never downgrading: `upgrade_problem` says why an
upgrade from one version to another is refused.
"""

import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Case, Count, IntegerField, QuerySet, Value, When

from sites.models import Cluster, Site

_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:[+-]k3s(\d+))?$")


@dataclass(frozen=True, order=True)
class K3sVersion:
    major: int
    minor: int
    patch: int
    build: int = 0

    @classmethod
    def parse(cls, text: str) -> "K3sVersion | None":
        """`v1.31.4+k3s1` (or `v1.31.4-k3s1`, as the upgrade controller writes it); None when it is not one."""
        found = _VERSION_RE.match((text or "").strip())
        if not found:
            return None
        major, minor, patch, build = found.groups()
        return cls(int(major), int(minor), int(patch), int(build or 0))

    @property
    def minor_line(self) -> str:
        return f"v{self.major}.{self.minor}"

    def minors_behind(self, target: "K3sVersion") -> int:
        """How many minor versions this is behind `target` (negative when ahead)."""
        return (target.major - self.major) * 100 + (target.minor - self.minor)

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}.{self.patch}+k3s{self.build}"


def target_version() -> K3sVersion | None:
    return K3sVersion.parse(settings.FLEET_K3S_TARGET_VERSION)


def allowed_skew() -> int:
    return int(settings.FLEET_K3S_ALLOWED_MINOR_SKEW)


def upgrade_problem(current: str, target: str) -> str:
    """Why a site at `current` must not be upgraded to `target` ("" when it may, or is there already)."""
    to = K3sVersion.parse(target)
    if to is None:
        return f"{target!r} is not a K3s version (like v1.31.4+k3s1)"
    have = K3sVersion.parse(current)
    if have is None:
        return "its K3s version is not known yet (the site has not been probed)"
    if have > to:
        return f"it runs {current}, newer than {target}; K3s is not downgraded"
    behind = have.minors_behind(to)
    if behind > 1:
        skipped = ", ".join(f"v{to.major}.{to.minor - n}" for n in range(behind - 1, 0, -1))
        return (
            f"it runs {current}: going to {target} would skip {skipped}; K3s upgrades one minor version at a time "
            f"(upgrade it to the newest v{have.major}.{have.minor + 1} first)"
        )
    return ""


@dataclass(frozen=True)
class VersionCount:
    version: str
    sites: int
    minors_behind: int | None  # None: not a K3s version, or no target
    flagged: bool  # more than the allowed skew behind the target


def _judge(version: str, target: K3sVersion | None) -> tuple[int | None, bool]:
    parsed = K3sVersion.parse(version)
    if parsed is None or target is None:
        return None, parsed is None and bool(version)
    behind = parsed.minors_behind(target)
    return behind, behind > allowed_skew()


def version_distribution(sites: QuerySet[Site] | None = None) -> list[VersionCount]:
    """How many sites run each K3s version (those never probed under ""), newest first."""
    target = target_version()
    clusters = Cluster.objects.all() if sites is None else Cluster.objects.filter(site__in=sites)
    rows = clusters.values("k3s_version").annotate(n=Count("*"))
    counts = [VersionCount(r["k3s_version"], r["n"], *_judge(r["k3s_version"], target)) for r in rows]
    return sorted(counts, key=lambda c: (K3sVersion.parse(c.version) or K3sVersion(-1, 0, 0), c.version), reverse=True)


def _behind_ranks(counts: list[VersionCount], flagged_only: bool) -> dict[str, int]:
    """The versions of `counts` that are behind the target (older, or not known), each with its rank in the
    list of the sites behind: minors behind, 999 for a version that is not one (first, as it is the least known)."""
    target = target_version()
    ranks = {}
    for count in counts:
        parsed = K3sVersion.parse(count.version)
        if target is not None and parsed is not None and parsed >= target:
            continue
        if flagged_only and not count.flagged:
            continue
        ranks[count.version] = 999 if count.minors_behind is None else count.minors_behind
    return ranks


def behind(
    sites: QuerySet[Site] | None = None, *, flagged_only: bool = False, distribution: list[VersionCount] | None = None
) -> QuerySet[Site]:
    """The sites whose recorded version is older than the target (or unknown), most behind first, then by code,
    with their cluster. The versions behind come from the distribution (one GROUP BY over the clusters, or
    `distribution` when it was read already), so the sites are one query the database can limit to a page."""
    ranks = _behind_ranks(version_distribution(sites) if distribution is None else distribution, flagged_only)
    rank = Case(
        *[When(cluster__k3s_version=v, then=Value(r)) for v, r in ranks.items()],
        default=Value(0),
        output_field=IntegerField(),
    )
    queryset = sites if sites is not None else Site.objects.all()
    return (
        queryset.filter(cluster__k3s_version__in=list(ranks))
        .select_related("cluster")
        .annotate(k3s_rank=rank)
        .order_by("-k3s_rank", "code")
    )


def behind_count(distribution: list[VersionCount], *, flagged_only: bool = False) -> int:
    """How many sites of `distribution` (version_distribution's answer) `behind` lists."""
    ranks = _behind_ranks(distribution, flagged_only)
    return sum(count.sites for count in distribution if count.version in ranks)


def sites_behind(
    sites: QuerySet[Site] | None = None,
    *,
    flagged_only: bool = False,
    limit: int | None = None,
    distribution: list[VersionCount] | None = None,
) -> list[dict[str, Any]]:
    """The first `limit` (all without one) of `behind`'s sites as
    `{code, name, region, version, minors_behind, flagged}`."""
    target = target_version()
    queryset = behind(sites, flagged_only=flagged_only, distribution=distribution)
    found = []
    for site in queryset if limit is None else queryset[:limit]:
        version = site.cluster.k3s_version
        minors_behind, flagged = _judge(version, target)
        found.append(
            {
                "code": site.code,
                "name": site.name,
                "region": site.region,
                "version": version,
                "minors_behind": minors_behind,
                "flagged": flagged,
            }
        )
    return found
