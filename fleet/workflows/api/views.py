"""Thin API views over the workflow services: list and read runs, cancel one."""

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from fleet.api.inputs import validated
from fleet.api.pagination import FleetCursorPagination
from fleet.api.permissions import ActionPermission
from fleet.audit.choices import Source
from fleet.workflows import selectors, services
from fleet.workflows.api.filters import WorkflowRunFilter
from fleet.workflows.api.serializers import CancelSerializer, WorkflowRunSerializer


class WorkflowRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Workflow runs with their step timelines, newest first. Runs are started by the operations that
    need them (`nodes/{id}/wipe/`...), never here; `cancel/` asks an active run to stop."""

    queryset = selectors.run_list()
    serializer_class = WorkflowRunSerializer
    filterset_class = WorkflowRunFilter
    pagination_class = FleetCursorPagination
    search_fields = ["subject_repr", "kind"]
    ordering_fields: list[str] = []
    permission_classes = [ActionPermission]
    action_permissions = {"cancel": ["workflows.view_workflowrun", "workflows.cancel_workflowrun"]}

    @extend_schema(request=CancelSerializer, responses={202: WorkflowRunSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: Any = None) -> Response:
        """Cancel an active run (202; it stops before its next step). 409 if it has already ended."""
        run = self.get_object()
        data = validated(CancelSerializer, request.data)
        services.workflow_cancel(run=run, actor=request.user, source=Source.API, reason=data["reason"])
        run = selectors.run_list().get(pk=run.pk)
        return Response(WorkflowRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)
