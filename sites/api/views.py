"""Thin API views over the sites services."""

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from fleet.api.pagination import FleetCursorPagination
from fleet.api.permissions import ActionPermission
from sites import selectors, services
from sites.api.filters import NodeFilter, SiteFilter
from sites.api.serializers import (
    ClusterCredentialsSerializer,
    ClusterSerializer,
    NodeSerializer,
    NodeWriteSerializer,
    ProbeAcceptedSerializer,
    SiteSerializer,
    SiteWriteSerializer,
)
from sites.models import Site


class SitePagination(FleetCursorPagination):
    ordering = "code"


class SiteViewSet(viewsets.ModelViewSet):
    """Sites (locations), looked up by code. Writes go through sites.services and are audited."""

    queryset = selectors.site_list()
    serializer_class = SiteSerializer
    lookup_field = "code"
    lookup_value_regex = "[A-Za-z0-9-]+"
    filterset_class = SiteFilter
    pagination_class = SitePagination
    search_fields = ["code", "name"]
    ordering_fields: list[str] = []
    permission_classes = [ActionPermission]
    action_permissions = {
        "cluster": None,  # decided per method in the action
        "probe": ["sites.probe_site"],
    }

    @extend_schema(request=SiteWriteSerializer, responses={201: SiteSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = _validated(SiteWriteSerializer, request.data)
        data.pop("reason", None)
        site = services.site_create(actor=request.user, source="api", **data)
        return Response(self._present(site), status=status.HTTP_201_CREATED)

    @extend_schema(request=SiteWriteSerializer, responses=SiteSerializer)
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        site = self.get_object()
        data = _validated(SiteWriteSerializer, request.data, partial=kwargs.get("partial", False))
        state, reason = data.pop("state", None), data.pop("reason", "")
        if data:
            site = services.site_update(site=site, actor=request.user, source="api", **data)
        if state is not None:
            site = services.site_transition(site=site, to=state, actor=request.user, source="api", reason=reason)
        return Response(self._present(site))

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.site_delete(site=self.get_object(), actor=request.user, source="api")
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(methods=["GET"], responses=ClusterSerializer)
    @extend_schema(methods=["PUT", "PATCH"], request=ClusterCredentialsSerializer, responses=ClusterSerializer)
    @action(detail=True, methods=["get", "put", "patch"])
    def cluster(self, request: Request, code: str | None = None) -> Response:
        """The site's cluster. GET shows its state; PUT/PATCH set its endpoint and credentials (write-only)."""
        site = self.get_object()
        needed = "sites.view_cluster" if request.method == "GET" else "sites.change_cluster"
        if not request.user.has_perm(needed):
            self.permission_denied(request, message=f"you need the {needed} permission")
        if request.method != "GET":
            data = _validated(ClusterCredentialsSerializer, request.data)
            services.cluster_set_credentials(cluster=site.cluster, actor=request.user, source="api", **data)
            site.cluster.refresh_from_db()
        return Response(ClusterSerializer(site.cluster).data)

    @extend_schema(request=None, responses={202: ProbeAcceptedSerializer})
    @action(detail=True, methods=["post"])
    def probe(self, request: Request, code: str | None = None) -> Response:
        """Queue a probe of the site's cluster (version, reachability); the result shows on `cluster`."""
        site = self.get_object()
        services.site_probe_request(sites=[site], actor=request.user, source="api")
        return Response({"site": site.code, "queued": True}, status=status.HTTP_202_ACCEPTED)

    def _present(self, site: Site) -> dict[str, Any]:
        return dict(SiteSerializer(selectors.site_list().get(pk=site.pk)).data)


class NodeViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Machines. POST pre-registers one; PATCH changes its details or, with `state`, moves it through
    the lifecycle transition table (409 when the move is not allowed)."""

    queryset = selectors.node_list()
    serializer_class = NodeSerializer
    filterset_class = NodeFilter
    pagination_class = FleetCursorPagination
    search_fields = ["serial", "hostname", "mac", "site__code"]
    ordering_fields: list[str] = []

    @extend_schema(request=NodeWriteSerializer, responses={201: NodeSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = _validated(NodeWriteSerializer, request.data)
        data.pop("reason", None)
        node = services.node_create(actor=request.user, source="api", **data)
        return Response(NodeSerializer(node).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=NodeWriteSerializer, responses=NodeSerializer)
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        node = self.get_object()
        data = _validated(NodeWriteSerializer, request.data, partial=kwargs.get("partial", False))
        state, reason = data.pop("state", None), data.pop("reason", "")
        if data:
            node = services.node_update(node=node, actor=request.user, source="api", **data)
        if state is not None:
            node = services.node_transition(node=node, to=state, actor=request.user, source="api", reason=reason)
        return Response(NodeSerializer(node).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.node_delete(node=self.get_object(), actor=request.user, source="api")
        return Response(status=status.HTTP_204_NO_CONTENT)


def _validated(serializer_class: type, data: Any, *, partial: bool = False) -> dict[str, Any]:
    serializer = serializer_class(data=data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
