"""The K3s version policy in the admin's site list: a filter whose choices are the fleet's version
distribution (each version with its number of sites, flagged when more than the allowed skew behind the
target) and the sites behind the target, and a version column that marks them (sites.k3s_versions)."""

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from sites import k3s_versions
from sites.models import Site

BEHIND, FLAGGED = "behind", "flagged"


def _behind_codes(flagged_only: bool) -> QuerySet[Site, Any]:
    return k3s_versions.behind(flagged_only=flagged_only).values("code")  # a subquery, not 30000 codes


class K3sVersionFilter(admin.SimpleListFilter):
    title = "K3s version"
    parameter_name = "k3s"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        target = k3s_versions.target_version()
        choices: list[tuple[str, str]] = [
            (BEHIND, f"behind the target {target or '(none set)'}"),
            (FLAGGED, f"more than {k3s_versions.allowed_skew()} minor version(s) behind"),
        ]
        for count in k3s_versions.version_distribution()[:30]:
            mark = " ⚑" if count.flagged else ""
            choices.append((count.version or "-", f"{count.version or 'unknown'}: {count.sites} site(s){mark}"))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        if value in (BEHIND, FLAGGED):
            return queryset.filter(code__in=_behind_codes(value == FLAGGED))
        version = "" if value == "-" else value
        return queryset.filter(Q(cluster__k3s_version=version))


def k3s_version_cell(site: Site) -> str:
    """The site's K3s version, marked when it is more than the allowed skew behind the target."""
    version = site.cluster.k3s_version if hasattr(site, "cluster") else ""
    parsed, target = k3s_versions.K3sVersion.parse(version), k3s_versions.target_version()
    if parsed is not None and target is not None and parsed.minors_behind(target) > k3s_versions.allowed_skew():
        return format_html('<span title="{}">{} ⚑</span>', f"more than the allowed skew behind {target}", version)
    return version or "-"
