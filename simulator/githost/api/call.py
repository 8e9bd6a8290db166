"""One REST API request (`Call`): its principal, path segments and parameters, the scope and access
checks every handler starts with, and GitLab-shaped JSON answers with offset pagination."""

import json
import math
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

from simulator.githost.errors import HostError, insufficient_scope, message, not_found
from simulator.githost.records import DEVELOPER, GUEST, MAINTAINER, Group, Principal, Project
from simulator.githost.state import GitHostState

API_PREFIX = "/gitlab/api/v4"
MAX_BODY = 1024 * 1024


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status, content_type="application/json", headers=headers)


def error_response(exc: HostError) -> web.Response:
    return json_response(exc.body, exc.status, exc.headers)


class Call:
    """One API request: its principal, path segments (decoded one by one) and parameters."""

    def __init__(self, state: GitHostState, request: web.Request, principal: Principal, segments: list[str]):
        self.state = state
        self.request = request
        self.principal = principal
        self.segments = segments
        self.params: dict[str, Any] = dict(request.query)

    async def read_body(self) -> None:
        data = await self.request.content.read(MAX_BODY + 1)
        if len(data) > MAX_BODY:
            raise message(413, "413 Request Entity Too Large")
        if not data.strip():
            return
        if self.request.content_type == "application/x-www-form-urlencoded":
            self.params.update(dict(parse_qsl(data.decode(errors="replace"))))
            return
        try:
            body = json.loads(data)
        except ValueError:
            raise HostError(400, {"error": "The provided content-type 'application/json' is not supported."}) from None
        if isinstance(body, dict):
            self.params.update(body)

    def need(self, scopes: tuple[str, ...]) -> None:
        if not self.principal.has_scope(scopes):
            raise insufficient_scope(scopes)

    def text(self, key: str, *, required: bool = False, default: str = "") -> str:
        value = self.params.get(key)
        if value is None or value == "":
            if required:
                raise HostError(400, {"error": f"{key} is missing"})
            return default
        if not isinstance(value, str | int):
            raise HostError(400, {"error": f"{key} is invalid"})
        return str(value)

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.params.get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        return str(value).lower() in ("true", "1", "yes")

    def level(self, key: str, default: int) -> int:
        value = self.params.get(key)
        if value is None:
            return default
        try:
            level = int(value)
        except (TypeError, ValueError):
            raise HostError(400, {"error": f"{key} does not have a valid value"}) from None
        if level not in (0, DEVELOPER, MAINTAINER, 60):
            raise HostError(400, {"error": f"{key} does not have a valid value"})
        return level


def paginate(call: Call, items: list[Any]) -> web.Response:
    """GitLab's offset pagination: the page asked for, and the headers python-gitlab follows."""
    try:
        per_page = max(1, min(100, int(call.params.get("per_page") or 20)))
        page = max(1, int(call.params.get("page") or 1))
    except ValueError:
        raise HostError(400, {"error": "page is invalid"}) from None
    total = len(items)
    pages = max(1, math.ceil(total / per_page))
    chunk = items[(page - 1) * per_page : page * per_page]
    base = (
        call.state.url
        + API_PREFIX.removeprefix("/gitlab")
        + "/"
        + call.request.raw_path.split("?")[0].split(API_PREFIX + "/", 1)[1]
    )
    query = {k: v for k, v in call.request.query.items() if k not in ("page", "per_page")}

    def link(number: int) -> str:
        return f"{base}?{urlencode({**query, 'page': number, 'per_page': per_page})}"

    links = []
    if page > 1:
        links.append(f'<{link(page - 1)}>; rel="prev"')
    if page < pages:
        links.append(f'<{link(page + 1)}>; rel="next"')
    links += [f'<{link(1)}>; rel="first"', f'<{link(pages)}>; rel="last"']
    headers = {
        "X-Page": str(page),
        "X-Per-Page": str(per_page),
        "X-Total": str(total),
        "X-Total-Pages": str(pages),
        "X-Next-Page": str(page + 1) if page < pages else "",
        "X-Prev-Page": str(page - 1) if page > 1 else "",
        "Link": ", ".join(links),
    }
    return json_response(chunk, headers=headers)


def group_of(call: Call, ref: str) -> Group:
    group = call.state.find_group(ref)
    principal = call.principal
    if group is None or principal.project_id is not None or not (principal.admin or principal.access_level >= GUEST):
        raise not_found("Group")
    return group


def project_of(call: Call, ref: str, level: int = GUEST) -> Project:
    project = call.state.find_project(ref)
    if project is None or call.principal.level_on(project) < GUEST:
        raise not_found("Project")
    if call.principal.level_on(project) < level:
        raise message(403, "403 Forbidden")
    return project
