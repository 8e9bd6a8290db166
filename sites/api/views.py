"""Thin API views over the sites services."""

from typing import Any

from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from fleet.api.idempotency import withhold_from_replay
from fleet.api.inputs import validated
from fleet.api.pagination import FleetCursorPagination
from fleet.api.permissions import ActionPermission
from fleet.api.service_views import ServiceModelViewSet, Writes
from fleet.audit.choices import Source
from fleet.workflows import WorkflowRun
from fleet.workflows.api.serializers import WorkflowRunSerializer, run_shape
from sites import devices, lifecycle, selectors, services, site_lifecycle
from sites.api.device_serializers import BackupSerializer
from sites.api.filters import NodeFilter, SiteFilter
from sites.api.serializers import (
    ClusterCredentialsSerializer,
    ClusterSerializer,
    FirstBootTokenSerializer,
    NodeProvisionSerializer,
    NodeReplaceSerializer,
    NodeRetireSerializer,
    NodeSerializer,
    NodeWipeSerializer,
    NodeWriteSerializer,
    OnboardAcceptedSerializer,
    ProbeAcceptedSerializer,
    RevokeCredentialsSerializer,
    RevokedCredentialsSerializer,
    SiteDecommissionSerializer,
    SiteOnboardSerializer,
    SiteSerializer,
    SiteWriteSerializer,
)
from sites.models import Site


class TieBrokenCursorPagination(FleetCursorPagination):
    """Cursor pagination that a client may order by a few values (`?ordering=health`): rows with the same
    value come in the order of a unique field, so pages neither repeat nor skip a row."""

    def get_ordering(self, request: Request, queryset: Any, view: Any) -> tuple[str, ...]:
        ordering = tuple(super().get_ordering(request, queryset, view))
        unique = self.ordering if isinstance(self.ordering, str) else self.ordering[0]
        return ordering if unique.lstrip("-") in {f.lstrip("-") for f in ordering} else (*ordering, unique)


class SitePagination(TieBrokenCursorPagination):
    ordering = "code"


class NodePagination(TieBrokenCursorPagination):
    ordering = "-id"


class SiteViewSet(ServiceModelViewSet):
    """Sites (locations), looked up by code. Writes go through sites.services and are audited."""

    queryset = selectors.site_list()
    serializer_class = SiteSerializer
    write_serializer_class = SiteWriteSerializer
    writes = Writes(
        "site", services.site_create, services.site_update, services.site_delete, set_state=services.site_set_state
    )
    lookup_field = "code"
    lookup_value_regex = "[A-Za-z0-9-]+"
    filterset_class = SiteFilter
    pagination_class = SitePagination
    search_fields = ["code", "name"]
    # Only non-null columns: a cursor cannot stand on a null. `health_since` is a filter, not an order.
    ordering_fields = ["code", "health"]
    ordering = ["code"]
    permission_classes = [ActionPermission]
    action_permissions = {
        "cluster": None,  # decided per method in the action
        "probe": ["sites.probe_site"],
        "backups": ["sites.view_site", "sites.view_backup"],
        "decommission": ["sites.view_site", "sites.decommission_site"],
        "onboard": ["sites.view_site", "sites.onboard_site"],
    }

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
            data = validated(ClusterCredentialsSerializer, request.data)
            join = {key: data.pop(f"join_{key}") for key in ("server_url", "token") if f"join_{key}" in data}
            with transaction.atomic():  # both halves or neither
                if not join or any(key in data for key in ClusterCredentialsSerializer.CREDENTIAL_FIELDS):
                    services.cluster_set_credentials(
                        cluster=site.cluster, actor=request.user, source=Source.API, **data
                    )
                if join:
                    services.cluster_set_join_config(
                        cluster=site.cluster, actor=request.user, source=Source.API, **join
                    )
            site.cluster.refresh_from_db()
        return Response(ClusterSerializer(site.cluster).data)

    @extend_schema(
        parameters=[OpenApiParameter("all", bool, description="every recorded backup, not only the latest")],
        responses=BackupSerializer(many=True),
    )
    @action(detail=True, methods=["get"])
    def backups(self, request: Request, code: str | None = None) -> Response:
        """The latest backup of each application at the site (what a re-hydration restores); `?all=1` for all."""
        site = self.get_object()
        if request.query_params.get("all") in ("1", "true", "yes"):
            rows = list(selectors.backups_of(site))
        else:
            rows = list(selectors.latest_backups(site).values())
        return Response(BackupSerializer(rows, many=True).data)

    @extend_schema(request=None, responses={202: ProbeAcceptedSerializer})
    @action(detail=True, methods=["post"])
    def probe(self, request: Request, code: str | None = None) -> Response:
        """Queue a probe of the site's cluster (version, reachability); the result shows on `cluster`."""
        site = self.get_object()
        services.site_probe_request(sites=[site], actor=request.user, source=Source.API)
        return Response({"site": site.code, "queued": True}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=SiteOnboardSerializer, responses={202: OnboardAcceptedSerializer})
    @action(detail=True, methods=["post"])
    def onboard(self, request: Request, code: str | None = None) -> Response:
        """Start `site.onboard` (needs `sites.onboard_site`): the git host project, the base stack as its
        first commit, the edge pointed at it, then `active` once applied. When machines wait to register
        at the site, their first bootstrap token is in this answer (`first_boot`), once."""
        validated(SiteOnboardSerializer, request.data or {})
        onboarding = site_lifecycle.site_onboard_request(site=self.get_object(), actor=request.user, source=Source.API)
        body = run_shape(onboarding.run)
        first_boot = onboarding.first_boot
        if first_boot is None:
            return Response(body, status=status.HTTP_202_ACCEPTED)
        token = first_boot.token
        body["first_boot"] = FirstBootTokenSerializer(
            {
                "id": token.pk,
                "token": first_boot.plaintext,
                "prefix": token.prefix,
                "serials": token.serials,
                "expires_at": token.expires_at,
            }
        ).data
        response = Response(body, status=status.HTTP_202_ACCEPTED)
        return withhold_from_replay(response, resource_id=onboarding.run.pk)  # the token is shown once

    @extend_schema(request=SiteDecommissionSerializer, responses={202: WorkflowRunSerializer})
    @action(detail=True, methods=["post"])
    def decommission(self, request: Request, code: str | None = None) -> Response:
        """Decommission the site (needs `sites.decommission_site`; final; `confirm` must be its code) and start
        `site.decommission`: node credentials, bootstrap and deploy tokens revoked, the project archived."""
        data = validated(SiteDecommissionSerializer, request.data)
        run = site_lifecycle.site_decommission_request(
            site=self.get_object(), actor=request.user, source=Source.API, **data
        )
        return _accepted(run)

    def present(self, site: Site) -> dict[str, Any]:
        """With its counts and cluster, as the list shows it."""
        return dict(SiteSerializer(selectors.site_list().get(pk=site.pk)).data)


class NodeViewSet(ServiceModelViewSet):
    """Machines. POST pre-registers one; PATCH changes its details or, with `state`, cordons, uncordons,
    marks it broken or accepts a quarantined machine (409 when the table forbids the move, 400 naming the
    door to use for a move that belongs to a workflow or to `retire/`)."""

    queryset = selectors.node_list()
    serializer_class = NodeSerializer
    write_serializer_class = NodeWriteSerializer
    writes = Writes(
        "node", services.node_create, services.node_update, services.node_delete, set_state=services.node_set_state
    )
    permission_classes = [ActionPermission]
    action_permissions = {
        "revoke_credentials": ["sites.change_node"],
        "provision": ["sites.view_node", "sites.provision_node"],
        "wipe": ["sites.view_node", "sites.wipe_node"],
        "replace": ["sites.view_node", "sites.wipe_node"],
        "retire": ["sites.view_node", "sites.retire_node"],
    }
    filterset_class = NodeFilter
    pagination_class = NodePagination
    search_fields = ["serial", "hostname", "mac", "site__code"]
    ordering_fields = ["id", "health"]
    ordering = ["-id"]

    @extend_schema(request=RevokeCredentialsSerializer, responses=RevokedCredentialsSerializer)
    @action(detail=True, methods=["post"], url_path="revoke-credentials")
    def revoke_credentials(self, request: Request, pk: str | None = None) -> Response:
        """Revoke the machine's device-API credential (it gets 401 until it registers again)."""
        data = validated(RevokeCredentialsSerializer, request.data)
        count = devices.node_credentials_revoke(
            node=self.get_object(), actor=request.user, source=Source.API, reason=data["reason"]
        )
        return Response({"revoked": count})

    @extend_schema(request=NodeProvisionSerializer, responses={202: WorkflowRunSerializer})
    @action(detail=True, methods=["post"])
    def provision(self, request: Request, pk: str | None = None) -> Response:
        """Start `node.provision`: await the machine's check-in and its Ready node, label it, make it active."""
        validated(NodeProvisionSerializer, request.data or {})
        run = lifecycle.node_provision_request(node=self.get_object(), actor=request.user, source=Source.API)
        return _accepted(run)

    @extend_schema(request=NodeWipeSerializer, responses={202: WorkflowRunSerializer})
    @action(detail=True, methods=["post"])
    def wipe(self, request: Request, pk: str | None = None) -> Response:
        """Start `node.wipe` (needs `sites.wipe_node`); `confirm` must be the node's hostname."""
        data = validated(NodeWipeSerializer, request.data)
        run = lifecycle.node_wipe_request(node=self.get_object(), actor=request.user, source=Source.API, **data)
        return _accepted(run)

    @extend_schema(request=NodeReplaceSerializer, responses={202: WorkflowRunSerializer})
    @action(detail=True, methods=["post"])
    def replace(self, request: Request, pk: str | None = None) -> Response:
        """Start `node.replace` (throw-away, needs `sites.wipe_node`): the replacement serial is
        pre-registered at the same site and re-hydrated from the latest backups once it joins."""
        data = validated(NodeReplaceSerializer, request.data)
        run = lifecycle.node_replace_request(node=self.get_object(), actor=request.user, source=Source.API, **data)
        return _accepted(run)

    @extend_schema(request=NodeRetireSerializer, responses=NodeSerializer)
    @action(detail=True, methods=["post"])
    def retire(self, request: Request, pk: str | None = None) -> Response:
        """Retire a pre-registered, wiped or quarantined node (needs `sites.retire_node`; final); `confirm`
        must be its hostname. Its device credential is revoked."""
        data = validated(NodeRetireSerializer, request.data)
        node = lifecycle.node_retire(node=self.get_object(), actor=request.user, source=Source.API, **data)
        return Response(NodeSerializer(node).data)


def _accepted(run: WorkflowRun) -> Response:
    """202 with the run in the engine's run shape (its steps so far)."""
    return Response(run_shape(run), status=status.HTTP_202_ACCEPTED)
