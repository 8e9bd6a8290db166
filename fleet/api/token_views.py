"""The token endpoints: `POST auth/token/` (a password for a new key), `GET auth/tokens/` (one's own keys) and
`DELETE auth/tokens/{id}/` (revoke one of them). Keys are shown once, in the answer that issued them."""

from typing import Any

from django.contrib.auth import authenticate
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from fleet.api.idempotency import withhold_from_replay
from fleet.api.inputs import validated
from fleet.api.models import ApiToken
from fleet.api.throttling import LoginThrottle
from fleet.api.tokens import api_token_issue, api_token_revoke
from fleet.audit.choices import Source


class ObtainTokenSerializer(serializers.Serializer[Any]):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, write_only=True)
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


class IssuedTokenSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    token = serializers.CharField(help_text="the key: shown in this answer only")
    prefix = serializers.CharField()
    name = serializers.CharField()
    expires_at = serializers.DateTimeField()


class ApiTokenSerializer(serializers.ModelSerializer[ApiToken]):
    state = serializers.CharField(read_only=True)

    class Meta:
        model = ApiToken
        fields = ["id", "prefix", "name", "state", "created_at", "expires_at", "last_used_at", "revoked_at"]
        read_only_fields = fields


class ObtainTokenView(APIView):
    """`POST auth/token/` with username and password -> a new key `{"token", "expires_at", ...}`, audited.

    Every call issues a new key (the stored hash cannot give an old one back); throttled per client
    address (the "login" scope) like the admin's login form.
    """

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes = [LoginThrottle]

    @extend_schema(request=ObtainTokenSerializer, responses={200: IssuedTokenSerializer}, auth=[])
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = validated(ObtainTokenSerializer, request.data)
        user = authenticate(request._request, username=data["username"], password=data["password"])
        if user is None:
            # One message for a wrong password and an unknown user: nothing to learn about accounts.
            raise serializers.ValidationError({"detail": "unable to log in with these credentials"})
        token, key = api_token_issue(user=user, actor=user, source=Source.API, name=data["name"] or "auth/token/")
        body = {
            "id": token.pk,
            "token": key,
            "prefix": token.prefix,
            "name": token.name,
            "expires_at": token.expires_at,
        }
        # 200, not 201: the answer DRF's token view gave, which integrations already check for.
        response = Response(IssuedTokenSerializer(body).data, status=status.HTTP_200_OK)
        return withhold_from_replay(response, resource_id=token.pk)


class ApiTokenListView(generics.ListAPIView[ApiToken]):
    """`GET auth/tokens/`: the caller's own keys (prefix, name, state, expiry, last use), newest first."""

    serializer_class = ApiTokenSerializer
    permission_classes = [IsAuthenticated]
    filterset_fields: list[str] = []
    search_fields: list[str] = []
    ordering_fields: list[str] = []

    def get_queryset(self) -> QuerySet[ApiToken]:
        return ApiToken.objects.filter(user_id=self.request.user.pk or 0)


class ApiTokenDetailView(generics.RetrieveDestroyAPIView[ApiToken]):
    """`GET auth/tokens/{id}/`, `DELETE auth/tokens/{id}/`: one of the caller's keys; DELETE revokes it (204).
    Another user's key is a 404; staff revoke anyone's in the admin."""

    serializer_class = ApiTokenSerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self) -> QuerySet[ApiToken]:
        return ApiToken.objects.filter(user_id=self.request.user.pk or 0)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        api_token_revoke(token=self.get_object(), actor=request.user, source=Source.API)
        return Response(status=status.HTTP_204_NO_CONTENT)
