"""The answers of the site APIs: JSON bodies, Kubernetes `Status` errors, and a dropped connection."""

import json
from typing import Any

from aiohttp import web

from simulator.errors import ApiError

JSON = "application/json"


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status, content_type=JSON, headers=headers)


def error_response(exc: ApiError) -> web.Response:
    return web.Response(body=exc.body(), status=exc.code, content_type=JSON, headers=exc.headers or None)


def drop_connection(request: web.Request) -> web.Response:
    """Close the connection without an answer (an unreachable site)."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=499)  # never sent: the transport is gone


# What a site's API answers under the `garbage` fault: 200, and no Kubernetes object.
GARBAGE: tuple[tuple[str, bytes], ...] = (
    ("text/html", b"<html><body><h1>Welcome!</h1>Please log in to continue.</body></html>"),
    ("application/json", b'{"kind": "DeploymentList", "apiVersion": "apps/v1", "items": [{"metadata": {"na'),
    ("application/json", b"{}"),
    ("application/octet-stream", bytes(range(256))),
)


def garbage_response(which: int) -> web.Response:
    content_type, body = GARBAGE[which]
    return web.Response(status=200, body=body, content_type=content_type)
