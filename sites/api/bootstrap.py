"""Staff's side of zero-touch provisioning: a site's bootstrap tokens, under `sites/{code}/bootstrap-tokens/`.

Issuing needs `sites.add_bootstraptoken` (and `sites.issue_any_serial_bootstraptoken` for a site-wide
token), revoking `sites.change_bootstraptoken`, listing `sites.view_bootstraptoken`. The secret is in the
issuing answer only.
"""

import datetime as dt
from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from fleet.api.idempotency import withhold_from_replay
from fleet.api.inputs import validated
from fleet.api.permissions import ActionPermission
from fleet.audit.choices import Source
from sites import devices
from sites.api.device_serializers import (
    BootstrapTokenIssuedSerializer,
    BootstrapTokenIssueSerializer,
    BootstrapTokenSerializer,
)
from sites.models import BootstrapToken, Site


class BootstrapTokenViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Bootstrap tokens of one site, newest first. POST issues one (the secret is shown once);
    `POST {id}/revoke/` or `DELETE {id}/` revokes it."""

    serializer_class = BootstrapTokenSerializer
    permission_classes = [ActionPermission]
    action_permissions = {
        "create": ["sites.add_bootstraptoken"],
        "revoke": ["sites.change_bootstraptoken"],
        "destroy": ["sites.change_bootstraptoken"],
    }
    filterset_fields: list[str] = []
    search_fields: list[str] = []
    ordering_fields: list[str] = []

    def get_site(self) -> Site:
        return get_object_or_404(Site, code=self.kwargs["site_code"])

    def get_queryset(self) -> QuerySet[BootstrapToken]:
        return BootstrapToken.objects.filter(site__code=self.kwargs.get("site_code")).select_related(
            "site", "created_by", "revoked_by", "used_by"
        )

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.get_site()  # 404 for an unknown site rather than an empty list
        return super().list(request, *args, **kwargs)

    @extend_schema(request=BootstrapTokenIssueSerializer, responses={201: BootstrapTokenIssuedSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = validated(BootstrapTokenIssueSerializer, request.data)
        hours = data.get("lifetime_hours")
        token, plaintext = devices.bootstrap_token_issue(
            site=self.get_site(),
            actor=request.user,
            source=Source.API,
            lifetime=dt.timedelta(hours=hours) if hours else None,
            note=data["note"],
            serials=data.get("serials"),
            any_serial=data["any_serial"],
        )
        body = {
            "id": token.pk,
            "token": plaintext,
            "prefix": token.prefix,
            "expires_at": token.expires_at,
            "site": token.site.code,
            "serials": token.serials,
            "any_serial": token.any_serial,
        }
        response = Response(BootstrapTokenIssuedSerializer(body).data, status=status.HTTP_201_CREATED)
        return withhold_from_replay(response, resource_id=token.pk)  # a retried POST never sees the token again

    @extend_schema(request=None, responses=BootstrapTokenSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Make the token unusable (409 when it was already used)."""
        token = devices.bootstrap_token_revoke(token=self.get_object(), actor=request.user, source=Source.API)
        return Response(BootstrapTokenSerializer(token).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Revoke, as `revoke/` does; the row stays for the record."""
        devices.bootstrap_token_revoke(token=self.get_object(), actor=request.user, source=Source.API)
        return Response(status=status.HTTP_204_NO_CONTENT)
