"""One site of a rollout through the API: `GET site-rollouts/{id}/` and a person's two actions on it,
`POST site-rollouts/{id}/retry/` (a failed site back to pending in the open wave) and
`POST site-rollouts/{id}/skip/` (with a `reason`), both needing rollouts.change_siterollout. Thin doors
into rollouts.services.site_actions: 400 names `reason`, 403 the permission, 404 an unknown id, 409 the
state that forbids it."""

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from fleet.api.inputs import validated
from fleet.api.permissions import ActionPermission
from fleet.audit.choices import Source
from rollouts.api.serializers import RolloutActionSerializer, SiteRolloutSerializer
from rollouts.models import SiteRollout
from rollouts.services.site_actions import SITE_ACTION_PERMISSION, site_rollout_retry, site_rollout_skip


class SiteRolloutDetailSerializer(SiteRolloutSerializer):
    """One site in one rollout, with the ids to find its rollout and since when it does not answer."""

    id = serializers.IntegerField(read_only=True)
    rollout = serializers.IntegerField(source="rollout_id", read_only=True)

    class Meta(SiteRolloutSerializer.Meta):
        fields = ["id", "rollout", *SiteRolloutSerializer.Meta.fields, "unreachable_since"]
        read_only_fields = fields


class SiteRolloutViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """A site in a rollout, and retry / skip on it alone."""

    queryset = SiteRollout.objects.select_related("site", "wave")
    serializer_class = SiteRolloutDetailSerializer
    permission_classes = [ActionPermission]
    action_permissions = {"retry": [SITE_ACTION_PERMISSION], "skip": [SITE_ACTION_PERMISSION]}

    def _act(self, request: Request, service: Any) -> Response:
        data = validated(RolloutActionSerializer, request.data)
        row = service(site_rollout=self.get_object(), actor=request.user, source=Source.API, reason=data["reason"])
        return Response(SiteRolloutDetailSerializer(self.get_queryset().get(pk=row.pk)).data)

    @extend_schema(request=RolloutActionSerializer, responses=SiteRolloutDetailSerializer)
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        """Put a failed site back to pending in its rollout's open wave: the rollout starts it again."""
        return self._act(request, site_rollout_retry)

    @extend_schema(request=RolloutActionSerializer, responses=SiteRolloutDetailSerializer)
    @action(detail=True, methods=["post"])
    def skip(self, request: Request, pk: str | None = None) -> Response:
        """Skip a site that has not finished, with a `reason` (it never counts as failed)."""
        return self._act(request, site_rollout_skip)
