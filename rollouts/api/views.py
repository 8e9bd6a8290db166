"""Thin API views over the rollouts services."""

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from fleet.api.inputs import validated
from fleet.api.pagination import FleetCursorPagination
from fleet.api.permissions import ActionPermission
from fleet.api.service_views import ServiceModelViewSet, Writes
from fleet.audit.choices import Source
from fleet.errors import NotFound
from rollouts import dry_runs, selectors, services
from rollouts.api.dry_runs import PlanDryRunSerializer
from rollouts.api.filters import (
    ApplicationFilter,
    DriftFilter,
    ReleaseFilter,
    RolloutFilter,
    RolloutPlanFilter,
    SiteRolloutFilter,
)
from rollouts.api.serializers import (
    ApplicationSerializer,
    ApplicationWriteSerializer,
    DriftSerializer,
    DryRunSerializer,
    ReleaseSerializer,
    ReleaseWriteSerializer,
    RolloutActionSerializer,
    RolloutPlanSerializer,
    RolloutPlanWriteSerializer,
    RolloutSerializer,
    SiteRolloutSerializer,
)
from rollouts.models import Application, Release, Rollout, SiteSyncState


class ApplicationViewSet(ServiceModelViewSet):
    """Edge applications. Writes go through rollouts.services and are audited."""

    queryset = Application.objects.all()
    serializer_class = ApplicationSerializer
    write_serializer_class = ApplicationWriteSerializer
    writes = Writes(
        "application", services.application_create, services.application_update, services.application_delete
    )
    filterset_class = ApplicationFilter
    search_fields = ["name", "team", "namespace"]
    ordering_fields: list[str] = []


class ReleaseViewSet(ServiceModelViewSet):
    """Releases: templates validated at creation (400 naming the template, document and reason);
    any change after a rollout used one is refused (409)."""

    queryset = Release.objects.select_related("application", "created_by")
    serializer_class = ReleaseSerializer
    write_serializer_class = ReleaseWriteSerializer
    writes = Writes("release", services.release_create, services.release_update, services.release_delete)
    filterset_class = ReleaseFilter
    pagination_class = FleetCursorPagination
    search_fields = ["version", "application__name"]
    ordering_fields: list[str] = []

    def update_changes(self, obj: Release, data: dict[str, Any]) -> dict[str, Any]:
        if "application" in data and data.pop("application") != obj.application:
            raise ValidationError({"application": ["a release's application cannot change"]})
        return data


class RolloutPlanViewSet(ServiceModelViewSet):
    """Rollout plans. `dry-run/` starts a dry run in the background (POST, 202) or shows the latest (GET);
    `start/` (permission rollouts.start_rollout) starts a rollout and answers 202 with it."""

    queryset = selectors.plan_list()
    serializer_class = RolloutPlanSerializer
    write_serializer_class = RolloutPlanWriteSerializer
    writes = Writes("plan", services.rollout_plan_create, services.rollout_plan_update, services.rollout_plan_delete)
    filterset_class = RolloutPlanFilter
    search_fields = ["name"]
    ordering_fields: list[str] = []
    permission_classes = [ActionPermission]
    action_permissions = {
        "start": ["rollouts.start_rollout", "rollouts.view_rolloutplan"],
        "dry_run": ["rollouts.view_rolloutplan"],
    }

    @extend_schema(methods=["GET"], request=None, responses={200: PlanDryRunSerializer})
    @extend_schema(methods=["POST"], request=DryRunSerializer, responses={202: PlanDryRunSerializer})
    @action(detail=True, methods=["get", "post"], url_path="dry-run")
    def dry_run(self, request: Request, pk: str | None = None) -> Response:
        """POST starts a dry run in the background (permission rollouts.add_dryrun; 409 while one of this
        plan runs) and answers 202 with it: the waves the plan would make at `at` (default now), each
        site's window, and the release rendered at every targeted site within the renderer's limits.
        GET answers the latest dry run (404 while there is none)."""
        plan = self.get_object()
        if request.method == "POST":
            data = validated(DryRunSerializer, request.data)
            dry_run = dry_runs.dry_run_start(plan=plan, actor=request.user, source=Source.API, at=data.get("at"))
            return Response(PlanDryRunSerializer(dry_run).data, status=status.HTTP_202_ACCEPTED)
        latest = selectors.latest_dry_run(plan)
        if latest is None:
            raise NotFound(f"rollout plan {plan.name} has no dry run yet; POST to this address to start one")
        return Response(PlanDryRunSerializer(latest).data)

    @extend_schema(request=RolloutActionSerializer, responses={202: RolloutSerializer})
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str | None = None) -> Response:
        """Start a rollout of this plan (`{"reason"}` required): waves and sites are computed and stored;
        the workflow drives them, through the approval gates the plan and FLEET_ROLLOUT_APPROVAL_POLICY set."""
        data = validated(RolloutActionSerializer, request.data)
        rollout = services.rollout_start(plan=self.get_object(), actor=request.user, source=Source.API, **data)
        return Response(_present(rollout), status=status.HTTP_202_ACCEPTED)


class SiteRolloutPagination(FleetCursorPagination):
    ordering = "position"


class RolloutViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Rollouts, newest first, with their waves and counters (never counted per row). Actions:
    pause, resume, cancel, rollback (rollouts.change_rollout; cancel and rollback need a `reason`),
    approve (rollouts.approve_rollout; under the two-person rule not by who started it, last edited its
    plan or wrote its release)."""

    queryset = selectors.rollout_list()
    serializer_class = RolloutSerializer
    filterset_class = RolloutFilter
    pagination_class = FleetCursorPagination
    ordering_fields: list[str] = []
    permission_classes = [ActionPermission]
    action_permissions = {
        "pause": ["rollouts.change_rollout"],
        "resume": ["rollouts.change_rollout"],
        "cancel": ["rollouts.change_rollout"],
        "rollback": ["rollouts.change_rollout"],
        "approve": ["rollouts.approve_rollout"],
        "sites": ["rollouts.view_rollout"],
    }

    def _act(self, request: Request, service: Any, ok: int = status.HTTP_200_OK) -> Response:
        data = validated(RolloutActionSerializer, request.data)
        rollout = service(rollout=self.get_object(), actor=request.user, source=Source.API, reason=data["reason"])
        return Response(_present(rollout), status=ok)

    @extend_schema(request=RolloutActionSerializer, responses=RolloutSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, services.rollout_pause)

    @extend_schema(request=RolloutActionSerializer, responses=RolloutSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, services.rollout_resume)

    @extend_schema(request=RolloutActionSerializer, responses=RolloutSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, services.rollout_cancel)

    @extend_schema(request=RolloutActionSerializer, responses=RolloutSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        return self._act(request, services.rollout_approve)

    @extend_schema(request=RolloutActionSerializer, responses={202: RolloutSerializer})
    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, pk: str | None = None) -> Response:
        """Request a roll back of every site that got the release (202: the workflow carries it out)."""
        return self._act(request, services.rollout_rollback, ok=status.HTTP_202_ACCEPTED)

    @extend_schema(
        parameters=[
            OpenApiParameter("state", str, many=True),
            OpenApiParameter("skip_reason", str, many=True, description="unreachable, not_started, cancelled"),
            OpenApiParameter("wave", int),
            OpenApiParameter("site", str),
            OpenApiParameter("region", str),
        ],
        responses=SiteRolloutSerializer(many=True),
    )
    @action(detail=True, methods=["get"])
    def sites(self, request: Request, pk: str | None = None) -> Response:
        """The rollout's sites in planned order, filterable by state, skip reason and wave; cursor-paginated."""
        # Not self.get_object(): the rollout list's filters must not read this list's query parameters.
        rollout = get_object_or_404(Rollout, pk=pk)
        self.check_object_permissions(request, rollout)
        filterset = SiteRolloutFilter(request.query_params, queryset=selectors.site_rollout_list(rollout))
        if not filterset.is_valid():
            raise ValidationError(filterset.errors)
        queryset: QuerySet[Any] = filterset.qs
        paginator = SiteRolloutPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(SiteRolloutSerializer(page, many=True).data)


def _present(rollout: Rollout) -> dict[str, Any]:
    return dict(RolloutSerializer(selectors.rollout_list().get(pk=rollout.pk)).data)


class DriftViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """The drift check's answer per site (`?state=drifted`, `?region=`, `?site=`): whether the revision
    the site's GitOps agent applied is its repository head."""

    queryset = SiteSyncState.objects.select_related("site")
    serializer_class = DriftSerializer
    filterset_class = DriftFilter
    pagination_class = FleetCursorPagination
    ordering_fields: list[str] = []
    permission_classes = [ActionPermission]
