"""`k3s-versions/`: the fleet's K3s versions against the version policy (sites.k3s_versions): the target
(FLEET_K3S_TARGET_VERSION), the allowed skew, how many sites run each version, and the sites behind the
target, most behind first, flagged when more than the allowed skew behind. The sites' filters apply
(`region`, `labels`, `state`, ...); `flagged=true` keeps only the flagged sites; `limit` (1-1000, default
200) bounds the `behind` list, whose full size is `behind_count`. Read-only; needs `sites.view_site`."""

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from fleet.errors import Invalid
from sites import k3s_versions
from sites.api.filters import SiteFilter
from sites.models import Site

MAX_LIMIT = 1000


def _flag(value: str | None) -> bool:
    if value in (None, "", "false", "0"):
        return False
    if value in ("true", "1"):
        return True
    raise Invalid(f"flagged must be true or false, not {value!r}", field="flagged")


def _limit(value: str | None) -> int:
    if value in (None, ""):
        return 200
    try:
        limit = int(str(value))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {value!r}", field="limit")
    return limit


class K3sVersionsViewSet(viewsets.GenericViewSet):
    queryset = Site.objects.all()
    filterset_class = SiteFilter
    pagination_class = None

    @extend_schema(
        parameters=[
            OpenApiParameter("flagged", bool, description="only sites more than the allowed skew behind"),
            OpenApiParameter("limit", int, description="at most this many sites in `behind` (default 200)"),
        ],
        responses={200: dict},
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        flagged = _flag(request.query_params.get("flagged"))
        limit = _limit(request.query_params.get("limit"))
        sites = self.filter_queryset(self.get_queryset())
        target = k3s_versions.target_version()
        distribution = k3s_versions.version_distribution(sites)
        return Response(
            {
                "target": str(target) if target else "",
                "allowed_minor_skew": k3s_versions.allowed_skew(),
                "distribution": [
                    {"version": c.version, "sites": c.sites, "minors_behind": c.minors_behind, "flagged": c.flagged}
                    for c in distribution
                ],
                "behind_count": k3s_versions.behind_count(distribution, flagged_only=flagged),
                "behind": k3s_versions.sites_behind(
                    sites, flagged_only=flagged, limit=limit, distribution=distribution
                ),
            }
        )
