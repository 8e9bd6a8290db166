"""API tokens for integrations: issued at `auth/token/` or by staff in the admin, and audited either way."""

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.request import Request
from rest_framework.response import Response

from fleet.api.parsers import FleetFormParser, FleetJSONParser, FleetMultiPartParser
from fleet.audit.services import Actor, audit_record


def api_token_issue(*, user: User, actor: Actor, source: str) -> Token:
    """The user's token, created (and audited) if they have none. One token per user, as DRF keeps it."""
    with transaction.atomic():
        token, created = Token.objects.get_or_create(user=user)
        if created:
            audit_record(actor=actor, verb="issue_token", obj=user, source=source)
    return token


def api_token_revoke(*, token: Token, actor: Actor, source: str) -> None:
    with transaction.atomic():
        audit_record(actor=actor, verb="revoke_token", obj=token.user, source=source)
        token.delete()


class ObtainTokenView(ObtainAuthToken):
    """`POST auth/token/` with username and password -> `{"token"}`; the first issue is audited."""

    # ObtainAuthToken names DRF's own parsers; the API's bound what a body may hold (fleet.api.parsers).
    parser_classes = [FleetJSONParser, FleetFormParser, FleetMultiPartParser]

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = serializer.validated_data["user"]
        token = api_token_issue(user=user, actor=user, source="api")
        return Response({"token": token.key})
