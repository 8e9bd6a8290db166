"""The device API: what machines (not people) call. `device/register/` is authenticated by a site's
bootstrap token in the body; `device/heartbeat/` by the node credential (`Authorization: Node <token>`).

User tokens and sessions mean nothing here, and a node credential means nothing anywhere else.
Both endpoints are throttled with DRF's scoped throttle "device" (REST_FRAMEWORK's DEFAULT_THROTTLE_RATES).
"""

import io
from dataclasses import dataclass
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import exceptions, viewsets
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle

from fleet.api.idempotency import withhold_from_replay
from fleet.api.inputs import validated
from fleet.api.parsers import FleetJSONParser
from fleet.api.throttling import FleetThrottleMixin
from fleet.api.tokens import AuthorizationHeaderScheme
from sites import devices, heartbeats, registration, selectors
from sites.api.device_serializers import (
    DeviceRegisteredSerializer,
    DeviceRegisterSerializer,
    HeartbeatAnswerSerializer,
    HeartbeatSerializer,
)
from sites.models import Node, NodeCredential

MAX_BODY_BYTES = 256 * 1024  # 100 backups of ~1.5 KiB fit; anything bigger is not a heartbeat


@dataclass(frozen=True)
class NodePrincipal:
    """`request.user` of a machine's request: authenticated, but no user and no permissions."""

    node: Node
    is_authenticated: bool = True
    is_anonymous: bool = False

    @property
    def pk(self) -> str:
        return f"node:{self.node.pk}"

    def __str__(self) -> str:
        return devices.device_actor(self.node.serial)


class NodeAuthentication(BaseAuthentication):
    """`Authorization: Node <node_token>`: the active credential registration gave the machine."""

    keyword = "Node"

    def authenticate(self, request: Request) -> tuple[NodePrincipal, NodeCredential] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Authorization must be `Node <node_token>`")
        try:
            plaintext = parts[1].decode()
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("the node token is not valid") from exc
        credential = selectors.node_credential_for_token(plaintext)
        if credential is None:
            raise exceptions.AuthenticationFailed("the node token is not valid (unknown or revoked)")
        return NodePrincipal(credential.node), credential

    def authenticate_header(self, request: Request) -> str:
        # Naming the scheme makes DRF answer 401 (not 403) to a missing or refused credential.
        return self.keyword


class NodeAuthenticationScheme(AuthorizationHeaderScheme):
    target_class = "sites.api.device.NodeAuthentication"
    name = "nodeAuth"
    key_description = "`Node <node_token>`, the credential device/register/ answered"


class IsNode(BasePermission):
    """Only a request authenticated by a node credential."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, NodeCredential)


class DeviceThrottle(FleetThrottleMixin, ScopedRateThrottle):
    """The "device" scope, counted per node when a credential is presented and per address otherwise
    (the address behind FLEET_TRUSTED_PROXIES, in the shared cache: fleet.api.throttling)."""

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if isinstance(request.auth, NodeCredential):
            ident = f"node-{request.auth.node_id}"
        else:
            ident = self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class LimitedJSONParser(FleetJSONParser):
    """JSON with a size cap, read before parsing, so a huge body costs a bounded read and gets a 400; then
    the API's own checks (nesting depth, NUL characters...: fleet.api.parsers)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        body = stream.read(MAX_BODY_BYTES + 1) if stream is not None else b""
        if len(body) > MAX_BODY_BYTES:
            raise exceptions.ParseError(f"the request body is larger than {MAX_BODY_BYTES // 1024} KiB")
        return super().parse(io.BytesIO(body), media_type, parser_context)


class DeviceViewSet(viewsets.ViewSet):
    authentication_classes: list[type[BaseAuthentication]] = []
    throttle_classes = [DeviceThrottle]
    throttle_scope = "device"
    parser_classes = [LimitedJSONParser]


class DeviceRegisterViewSet(DeviceViewSet):
    """`POST device/register/`: a machine's first call home."""

    permission_classes = [AllowAny]

    @extend_schema(
        request=DeviceRegisterSerializer,
        responses={200: DeviceRegisteredSerializer},
        auth=[],
        examples=[
            OpenApiExample(
                "register",
                request_only=True,
                value={"serial": "SN123", "mac": "52:54:00:12:34:56", "bootstrap_token": "efb_…", "facts": {}},
            )
        ],
    )
    def create(self, request: Request) -> Response:
        """Register with a site's bootstrap token; answers the node credential and the K3s join config.

        403 when the token is unknown, expired, revoked or used, or when the machine is not the one
        pre-registered at that site, or not one the token was issued for; 409 when the node's state forbids it.
        """
        data = validated(DeviceRegisterSerializer, request.data)
        registered = registration.device_register(
            serial=data["serial"], mac=data["mac"], bootstrap_token=data["bootstrap_token"], facts=data["facts"]
        )
        node = registered.node
        response = Response(
            {
                "node_id": node.pk,
                "node_token": registered.node_token,
                "hostname": node.hostname,
                "role": node.role,
                "site": node.site.code,
                "k3s": {
                    "server_url": registered.server_url,
                    "token": registered.join_token,
                    "node_name": node.hostname,
                    "node_labels": [f"{k}={v}" for k, v in registered.node_labels.items()],
                },
            }
        )
        return withhold_from_replay(response, resource_id=node.pk)  # node and join tokens are shown once


class DeviceHeartbeatViewSet(DeviceViewSet):
    """`POST device/heartbeat/`: a registered machine says it is alive and reports its backups."""

    authentication_classes = [NodeAuthentication]
    permission_classes = [IsNode]

    @extend_schema(request=HeartbeatSerializer, responses={200: HeartbeatAnswerSerializer})
    def create(self, request: Request) -> Response:
        """Record last seen, software versions and backups; answers the node's state, the server time and
        the reported backups that were not kept (their application has no restore target)."""
        data = validated(HeartbeatSerializer, request.data)
        credential = request.auth
        if not isinstance(credential, NodeCredential):  # IsNode has refused this already; satisfy the types
            raise exceptions.NotAuthenticated()
        reports = [heartbeats.BackupReport(**backup) for backup in data["backups"]]
        beat = heartbeats.device_heartbeat(credential=credential, versions=data.get("versions"), backups=reports)
        return Response(
            {
                "node_id": beat.node.pk,
                "state": beat.node.state,
                "server_time": timezone.now(),
                "backups_kept": beat.backups_kept,
                "backups_ignored": beat.backups_ignored,
            }
        )
