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
