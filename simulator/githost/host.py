"""The git host as the simulator serves it: every request under `/gitlab/` goes through `GitHost.handle`
(faults, then the REST API or git's smart HTTP), and the control API gains `/_sim/githost/...` for tests.

Faults aimed at the git host name it as their site: `{"site": "githost", "kind": "api_error" | "throttle" |
"slow" | "timeout" | "offline", ...}`. Fleet-wide faults (`site: null`) leave it alone, so a benchmark
that breaks the sites' APIs still has a working git host.
"""

import asyncio
import datetime
import json
import logging
import math
from pathlib import Path
from typing import Any

from aiohttp import web

from simulator.errors import ApiError
from simulator.faults import Faults
from simulator.githost import api, smart_http
from simulator.githost.errors import HostError
from simulator.githost.records import API_SCOPES, OWNER, iso, parse_moment
from simulator.githost.state import GitHostState

log = logging.getLogger(__name__)

TARGET = "githost"
FAULT_KINDS = ("offline", "timeout", "throttle", "api_error", "slow")
GIT_TIMEOUT = 120.0


class GitHost:
    """The git host of one simulator: its state, its faults, its requests."""

    def __init__(self, state_dir: Path, repos_dir: Path, group: str, faults: Faults):
        self.state = GitHostState(state_dir, repos_dir, group)
        self.faults = faults
        self.counts: dict[str, int] = {"api": 0, "git": 0}

    def prepare(self, base_url: str = "") -> None:
        self.state.load()
        if base_url:
            self.set_base_url(base_url)

    def set_base_url(self, base_url: str) -> None:
        self.state.url = f"{base_url}/gitlab"

    @property
    def url(self) -> str:
        return self.state.url

    def info(self) -> dict[str, Any]:
        """What simulator.json says about the git host."""
        return {
            "url": self.state.url,
            "group": self.state.sites_group_path,
            "token_file": str(self.state.dir / "root-token"),
        }

    # --- requests -----------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        faulted = await self._faults(request)
        if faulted is not None:
            return faulted
        if request.path.startswith(api.API_PREFIX + "/") or request.path == api.API_PREFIX:
            self.counts["api"] += 1
            try:
                token = request.headers.get("PRIVATE-TOKEN")
                if token is None and request.headers.get("Authorization", "").startswith("Bearer "):
                    token = request.headers["Authorization"][len("Bearer ") :]
                principal = self.state.api_principal(token)
                return await api.dispatch(self.state, request, principal)
            except HostError as exc:
                return api.error_response(exc)
            except Exception:
                log.exception("git host API error on %s %s", request.method, request.path)
                return api.error_response(HostError(500, {"message": "500 Internal Server Error"}))
        if smart_http.is_git_request(request.path):
            self.counts["git"] += 1
            return await smart_http.handle(self.state, request, GIT_TIMEOUT)
        return web.Response(status=404, text="404 Not Found\n")

    async def _faults(self, request: web.Request) -> web.StreamResponse | None:
        if not self.faults:
            return None
        if self._roll("offline"):
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=499)
        if fault := self._roll("timeout"):
            await asyncio.sleep(min(fault.seconds if fault.seconds is not None else 60.0, 300.0))
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=499)
        if fault := self._roll("throttle"):
            retry = math.ceil(fault.seconds if fault.seconds is not None else 1.0)
            # GitLab's rate limiter (Rack::Attack) answers plain text with these headers.
            return web.Response(
                status=429,
                text="Retry later\n",
                headers={"Retry-After": str(retry), "RateLimit-Limit": "600", "RateLimit-Remaining": "0"},
            )
        if self._roll("api_error"):
            code = self.faults.random.choice((500, 502, 503))
            return api.error_response(HostError(code, {"message": f"{code} simulated git host failure"}))
        if fault := self._roll("slow"):
            await asyncio.sleep(fault.seconds if fault.seconds is not None else 0.5)
        return None

    def down(self) -> bool:
        """Whether the git host is offline now (a fault): what a site's fetch would find."""
        return bool(self.faults) and self._roll("offline") is not None

    def _roll(self, kind: str) -> Any:
        for fault in self.faults.all():
            if fault.site == TARGET and fault.kind == kind:
                if fault.rate >= 1.0 or self.faults.random.random() < fault.rate:
                    return fault
        return None

    # --- the control API ----------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        state = self.state
        return {
            **self.info(),
            "requests": dict(self.counts),
            "projects": [
                {"id": p.id, "path_with_namespace": state.full_path(p), "archived": p.archived,
                 "repository": str(state.repo_path(p))}
                for p in state.projects.values()
            ],
            "tokens": [
                {"id": t.id, "name": t.name, "username": t.username, "scopes": t.scopes, "revoked": t.revoked,
                 "expires_at": t.expires_at, "project_id": t.project_id, "access_level": t.access_level}
                for t in state.tokens.values()
            ],
            "deploy_tokens": [t.to_json() | {"project_id": t.project_id} for t in state.deploy_tokens.values()],
        }  # fmt: skip

    async def create_token(self, body: dict[str, Any]) -> dict[str, Any]:
        """`{"name", "scopes", "access_level"?, "project"?, "expires_at"?, "revoked"?}`: a personal access
        token of a new user with that role on the sites group, or a project access token when `project`
        (an id or path) is given. Answers the token with its value."""
        unknown = set(body) - {"name", "scopes", "access_level", "project", "expires_at", "revoked"}
        if unknown:
            raise ApiError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
        name = body.get("name") or "test-token"
        scopes = body.get("scopes") or ["api"]
        if not isinstance(scopes, list) or not scopes or any(s not in API_SCOPES for s in scopes):
            raise ApiError(400, f"scopes must be a list of {', '.join(sorted(API_SCOPES))}")
        level = body.get("access_level", OWNER)
        if level not in (10, 20, 30, 40, 50):
            raise ApiError(400, "access_level must be 10, 20, 30, 40 or 50")
        project_id = None
        if body.get("project") is not None:
            project = self.state.find_project(str(body["project"]))
            if project is None:
                raise ApiError(400, f"unknown project {body['project']!r}")
            project_id = project.id
        expires_at = body.get("expires_at")
        if expires_at is not None:
            try:
                parse_moment(str(expires_at))
            except ValueError:
                raise ApiError(400, "expires_at must be a date (YYYY-MM-DD) or an ISO 8601 time") from None
        token = self.state.add_token(
            name=str(name),
            scopes=[str(s) for s in scopes],
            access_level=int(level),
            project_id=project_id,
            expires_at=str(expires_at) if expires_at is not None else None,
            revoked=bool(body.get("revoked", False)),
        )
        return {"id": token.id, "name": token.name, "token": token.token, "username": token.username,
                "scopes": token.scopes, "created_at": token.created_at}  # fmt: skip

    def revoke_token(self, token_id: int) -> bool:
        token = self.state.tokens.get(token_id)
        if token is None or token.admin:
            return False
        token.revoked = True
        self.state.save()
        return True


async def _control_body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def add_control_routes(control: web.Application, host: GitHost) -> None:
    """`GET /_sim/githost` (projects, tokens, request counts), `POST /_sim/githost/tokens` (a new access
    token, its value in the answer), `DELETE /_sim/githost/tokens/{id}` (revoke)."""

    async def summary(request: web.Request) -> web.Response:
        return web.json_response(host.summary())

    async def create_token(request: web.Request) -> web.Response:
        return web.json_response(await host.create_token(await _control_body(request)), status=201)

    async def revoke_token(request: web.Request) -> web.Response:
        raw = request.match_info["token_id"]
        if not raw.isdigit() or not host.revoke_token(int(raw)):
            raise ApiError(404, f"no revocable token {raw!r}")
        return web.json_response({"revoked": int(raw), "at": iso(datetime.datetime.now(datetime.UTC))})

    control.router.add_get("/githost", summary)
    control.router.add_post("/githost/tokens", create_token)
    control.router.add_delete("/githost/tokens/{token_id}", revoke_token)
