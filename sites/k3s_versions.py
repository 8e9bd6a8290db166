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
from django.db.models import Count, QuerySet

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
    rows = clusters.values("k3s_version").annotate(n=Count("id"))
    counts = [VersionCount(r["k3s_version"], r["n"], *_judge(r["k3s_version"], target)) for r in rows]
    return sorted(counts, key=lambda c: (K3sVersion.parse(c.version) or K3sVersion(-1, 0, 0), c.version), reverse=True)


def sites_behind(sites: QuerySet[Site] | None = None, *, flagged_only: bool = False) -> list[dict[str, Any]]:
    """The sites whose recorded version is older than the target (or unknown), most behind first:
    `{code, name, region, version, minors_behind, flagged}`."""
    target = target_version()
    queryset = (sites if sites is not None else Site.objects.all()).select_related("cluster").order_by("code")
    found = []
    for site in queryset.filter(cluster__isnull=False):
        version = site.cluster.k3s_version
        parsed = K3sVersion.parse(version)
        if target is not None and parsed is not None and parsed >= target:
            continue
        behind, flagged = _judge(version, target)
        if flagged_only and not flagged:
            continue
        found.append(
            {
                "code": site.code,
                "name": site.name,
                "region": site.region,
                "version": version,
                "minors_behind": behind,
                "flagged": flagged,
            }
        )
    return sorted(found, key=lambda s: (-(s["minors_behind"] if s["minors_behind"] is not None else 999), s["code"]))
