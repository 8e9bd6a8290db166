"""The git host's REST API: the subset of GitLab's API v4 that edgefleet uses, shaped so that python-gitlab
accepts it unchanged (`gitlab.Gitlab(url)` with `url` = `https://HOST:PORT/gitlab`).

    GET  version, user, personal_access_tokens/self
    GET  groups/:id, groups/:id/projects
    GET  projects, POST projects, GET/PUT projects/:id, POST projects/:id/archive|unarchive
    GET/POST projects/:id/protected_branches, GET/PATCH/DELETE projects/:id/protected_branches/:name
    GET/POST projects/:id/deploy_tokens, GET/DELETE projects/:id/deploy_tokens/:token_id
    GET/POST projects/:id/repository/files/:file_path, GET .../files/:file_path/raw

`:id` is a number or a URL-encoded path (`fleet%2FTX-0412`), matched case-insensitively. Every call needs
`PRIVATE-TOKEN` or `Authorization: Bearer`; errors are GitLab's bodies (`{"message": "404 Project Not
Found"}`, `{"message": {"path": ["has already been taken"]}}`, `{"error": "invalid_token", ...}`). Lists
are paginated as GitLab does (`page`, `per_page` up to 100; `X-Total`, `X-Total-Pages`, `X-Page`,
`X-Next-Page`, `X-Prev-Page`, `X-Per-Page` and `Link`).
"""

import base64
import datetime
import hashlib
import json
import math
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from aiohttp import web

from simulator.githost import repos
from simulator.githost.state import (
    DEPLOY_SCOPES,
    DEVELOPER,
    GUEST,
    MAINTAINER,
    OWNER,
    READ_API,
    ROLE_NAMES,
    WRITE_API,
    GitHostState,
    Group,
    HostError,
    Principal,
    Project,
    ProtectedBranch,
    insufficient_scope,
    iso,
    message,
    not_found,
    parse_moment,
)
from simulator.gitrepo import init_bare

API_PREFIX = "/gitlab/api/v4"
MAX_BODY = 1024 * 1024
VERSION = {"version": "17.5.2", "revision": "edgefleet-simulator"}


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status, content_type="application/json", headers=headers)


def error_response(exc: HostError) -> web.Response:
    return _json(exc.body, exc.status, exc.headers)


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


# --- rendering ----------------------------------------------------------------------------------------


def group_json(state: GitHostState, group: Group) -> dict[str, Any]:
    return {
        "id": group.id,
        "name": group.name,
        "path": group.path,
        "full_name": " / ".join(g.name for g in _ancestry(state, group)),
        "full_path": group.full_path,
        "description": group.description,
        "visibility": "private",
        "parent_id": group.parent_id,
        "web_url": f"{state.url}/groups/{group.full_path}",
        "avatar_url": None,
        "created_at": group.created_at,
    }


def _ancestry(state: GitHostState, group: Group) -> list[Group]:
    chain = [group]
    while chain[0].parent_id is not None and chain[0].parent_id in state.groups:
        chain.insert(0, state.groups[chain[0].parent_id])
    return chain


def project_json(state: GitHostState, project: Project) -> dict[str, Any]:
    group = state.groups[project.namespace_id]
    full = f"{group.full_path}/{project.path}"
    web_url = f"{state.url}/{full}"
    host = urlsplit(state.url).hostname or "localhost"
    return {
        "id": project.id,
        "description": project.description or None,
        "name": project.name,
        "name_with_namespace": f"{group.name} / {project.name}",
        "path": project.path,
        "path_with_namespace": full,
        "created_at": project.created_at,
        "last_activity_at": project.last_activity_at,
        "default_branch": project.default_branch,
        "tag_list": list(project.topics),
        "topics": list(project.topics),
        "ssh_url_to_repo": f"git@{host}:{full}.git",
        "http_url_to_repo": f"{web_url}.git",
        "web_url": web_url,
        "readme_url": None,
        "avatar_url": None,
        "forks_count": 0,
        "star_count": 0,
        "namespace": {
            "id": group.id,
            "name": group.name,
            "path": group.path,
            "kind": "group",
            "full_path": group.full_path,
            "parent_id": group.parent_id,
            "avatar_url": None,
            "web_url": f"{state.url}/groups/{group.full_path}",
        },
        "visibility": project.visibility,
        "archived": project.archived,
        "empty_repo": repos.is_empty(state.repo_path(project)),
        "creator_id": project.creator_id,
        "repository_access_level": "enabled",
    }


def protected_json(branch: ProtectedBranch) -> dict[str, Any]:
    def levels(level: int) -> list[dict[str, Any]]:
        description = "No one" if level == 0 else ROLE_NAMES.get(level, "Admins")
        return [{"id": branch.id, "access_level": level, "access_level_description": description,
                 "deploy_key_id": None, "user_id": None, "group_id": None}]  # fmt: skip

    return {
        "id": branch.id,
        "name": branch.name,
        "push_access_levels": levels(branch.push_access_level),
        "merge_access_levels": levels(branch.merge_access_level),
        "unprotect_access_levels": levels(MAINTAINER),
        "allow_force_push": branch.allow_force_push,
        "code_owner_approval_required": False,
    }


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
    return _json(chunk, headers=headers)


# --- lookups with access checks -----------------------------------------------------------------------


def _group(call: Call, ref: str) -> Group:
    group = call.state.find_group(ref)
    principal = call.principal
    if group is None or principal.project_id is not None or not (principal.admin or principal.access_level >= GUEST):
        raise not_found("Group")
    return group


def _project(call: Call, ref: str, level: int = GUEST) -> Project:
    project = call.state.find_project(ref)
    if project is None or call.principal.level_on(project) < GUEST:
        raise not_found("Project")
    if call.principal.level_on(project) < level:
        raise message(403, "403 Forbidden")
    return project


# --- handlers ----------------------------------------------------------------------------------------


async def dispatch(state: GitHostState, request: web.Request, principal: Principal) -> web.Response:
    tail = request.raw_path.split("?")[0][len(API_PREFIX) :].strip("/")
    segments = [unquote(s) for s in tail.split("/")] if tail else []
    call = Call(state, request, principal, segments)
    method = request.method
    if method in ("POST", "PUT", "PATCH"):
        await call.read_body()
    if not segments:
        raise not_found("")
    head, rest = segments[0], segments[1:]
    if head == "version" and not rest and method == "GET":
        call.need(READ_API)
        return _json(VERSION)
    if head == "user" and not rest and method == "GET":
        call.need(READ_API + ("read_user",))
        user = {"id": 1 if principal.admin else 2, "username": principal.name, "name": principal.name}
        return _json({**user, "state": "active", "is_admin": principal.admin, "bot": principal.project_id is not None})
    if head == "personal_access_tokens" and rest == ["self"] and method == "GET":
        return _self_token(call)
    if head == "groups" and rest:
        return _groups(call, rest)
    if head == "projects":
        return await _projects(call, rest)
    raise not_found("")


def _self_token(call: Call) -> web.Response:
    header = call.request.headers.get("PRIVATE-TOKEN") or call.request.headers.get("Authorization", "")[7:]
    token = next(t for t in call.state.tokens.values() if t.token == header)
    return _json({"id": token.id, "name": token.name, "revoked": token.revoked, "created_at": token.created_at,
                  "scopes": token.scopes, "user_id": token.user_id, "last_used_at": token.last_used_at,
                  "active": not token.revoked and not token.expired(), "expires_at": token.expires_at})  # fmt: skip


def _groups(call: Call, rest: list[str]) -> web.Response:
    call.need(READ_API)
    if call.request.method != "GET":
        raise message(405, "405 Method Not Allowed")
    group = _group(call, rest[0])
    if len(rest) == 1:
        return _json(group_json(call.state, group))
    if rest[1:] == ["projects"]:
        found = [p for p in call.state.projects.values() if p.namespace_id == group.id]
        return paginate(call, [project_json(call.state, p) for p in _filtered(call, found)])
    raise not_found("")


def _filtered(call: Call, projects: list[Project]) -> list[Project]:
    visible = [p for p in projects if call.principal.level_on(p) >= GUEST]
    search = call.text("search").lower()
    if search:
        visible = [p for p in visible if search in p.name.lower() or search in p.path.lower()]
    if "archived" in call.params:
        visible = [p for p in visible if p.archived == call.flag("archived")]
    return sorted(visible, key=lambda p: p.id, reverse=call.text("sort", default="desc") != "asc")


async def _projects(call: Call, rest: list[str]) -> web.Response:
    method = call.request.method
    state = call.state
    if not rest:
        if method == "GET":
            call.need(READ_API)
            return paginate(call, [project_json(state, p) for p in _filtered(call, list(state.projects.values()))])
        if method == "POST":
            return _create_project(call)
        raise message(405, "405 Method Not Allowed")
    if len(rest) == 1:
        if method == "GET":
            call.need(READ_API)
            return _json(project_json(state, _project(call, rest[0])))
        if method == "PUT":
            call.need(WRITE_API)
            project = _project(call, rest[0], MAINTAINER)
            if "description" in call.params:
                project.description = call.text("description")
            if "topics" in call.params or "tag_list" in call.params:
                project.topics = _list(call.params.get("topics", call.params.get("tag_list")))
            state.save()
            return _json(project_json(state, project))
        raise message(405, "405 Method Not Allowed")
    action = rest[1]
    if action in ("archive", "unarchive") and len(rest) == 2 and method == "POST":
        call.need(WRITE_API)
        project = _project(call, rest[0], OWNER)
        project.archived = action == "archive"
        state.save()
        return _json(project_json(state, project), status=201)
    if action == "protected_branches":
        return _protected(call, _project(call, rest[0]), rest[2:])
    if action == "deploy_tokens":
        return _deploy_tokens(call, _project(call, rest[0]), rest[2:])
    if action == "repository" and len(rest) >= 4 and rest[2] == "files":
        return await _files(call, _project(call, rest[0]), rest[3:])
    raise not_found("")


def _list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v.strip() for v in str(value or "").split(",") if v.strip()]


def _create_project(call: Call) -> web.Response:
    call.need(WRITE_API)
    state, principal = call.state, call.principal
    name, path = call.text("name"), call.text("path")
    if not name and not path:
        raise HostError(400, {"error": "name, path are missing, at least one parameter must be provided"})
    name, path = name or path, path or name
    namespace_ref = call.text("namespace_id") or call.text("namespace")
    namespace = _group(call, namespace_ref) if namespace_ref else None
    if namespace is None:
        raise HostError(400, {"message": {"namespace": ["is not valid"]}})
    if not (principal.admin or (principal.project_id is None and principal.access_level >= DEVELOPER)):
        raise message(403, "403 Forbidden")
    project = state.create_project(
        name=name,
        path=path,
        namespace=namespace,
        creator=principal,
        description=call.text("description"),
        default_branch=call.text("default_branch", default="main"),
        visibility=call.text("visibility", default="private"),
        topics=_list(call.params.get("topics", call.params.get("tag_list"))),
    )
    repos_dir = state.repo_path(project)
    init_bare(repos_dir)  # a site's repository exists already, and keeps what it holds
    return _json(project_json(state, project), status=201)


def _protected(call: Call, project: Project, rest: list[str]) -> web.Response:
    method, state = call.request.method, call.state
    if method == "GET":
        call.need(READ_API)
        if not rest:
            return paginate(call, [protected_json(b) for b in project.protected_branches])
        branch = next((b for b in project.protected_branches if b.name == rest[0]), None)
        if branch is None:
            raise not_found("Protected Branch")
        return _json(protected_json(branch))
    call.need(WRITE_API)
    _project(call, str(project.id), MAINTAINER)
    if method == "POST" and not rest:
        name = call.text("name", required=True)
        if any(b.name == name for b in project.protected_branches):
            raise message(409, f"Protected branch '{name}' already exists")
        branch = ProtectedBranch(
            id=state._id("branch"),
            name=name,
            push_access_level=call.level("push_access_level", MAINTAINER),
            merge_access_level=call.level("merge_access_level", MAINTAINER),
            allow_force_push=call.flag("allow_force_push"),
        )
        project.protected_branches.append(branch)
        state.save()
        return _json(protected_json(branch), status=201)
    if len(rest) == 1:
        branch = next((b for b in project.protected_branches if b.name == rest[0]), None)
        if branch is None:
            raise not_found("Protected Branch")
        if method == "PATCH":
            if "allow_force_push" in call.params:
                branch.allow_force_push = call.flag("allow_force_push")
            state.save()
            return _json(protected_json(branch))
        if method == "DELETE":
            project.protected_branches.remove(branch)
            state.save()
            return web.Response(status=204)
    raise message(405, "405 Method Not Allowed")


def _deploy_tokens(call: Call, project: Project, rest: list[str]) -> web.Response:
    method, state = call.request.method, call.state
    call.need(READ_API if method == "GET" else WRITE_API)
    _project(call, str(project.id), MAINTAINER)
    tokens = [t for t in state.deploy_tokens.values() if t.project_id == project.id]
    if not rest:
        if method == "GET":
            if "active" in call.params:
                wanted = call.flag("active")
                tokens = [t for t in tokens if (not t.revoked and not t.expired()) == wanted]
            return paginate(call, [t.to_json() for t in tokens])
        if method == "POST":
            return _create_deploy_token(call, project)
        raise message(405, "405 Method Not Allowed")
    token = next((t for t in tokens if str(t.id) == rest[0]), None) if len(rest) == 1 else None
    if token is None:
        raise not_found("Deploy Token" if len(rest) == 1 else "")
    if method == "GET":
        return _json(token.to_json())
    if method == "DELETE":
        # GitLab revokes the token and drops it from the project: it never opens anything again.
        token.revoked = True
        state.save()
        return web.Response(status=204)
    raise message(405, "405 Method Not Allowed")


def _create_deploy_token(call: Call, project: Project) -> web.Response:
    name = call.text("name")
    scopes = _list(call.params.get("scopes"))
    problems: dict[str, list[str]] = {}
    if not name:
        raise HostError(400, {"error": "name is missing"})
    if not scopes:
        raise HostError(400, {"error": "scopes is missing"})
    unknown = [s for s in scopes if s not in DEPLOY_SCOPES]
    if unknown:
        raise HostError(400, {"error": "scopes does not have a valid value"})
    expires_at = call.text("expires_at") or None
    if expires_at:
        try:
            moment = parse_moment(expires_at)
        except ValueError:
            raise HostError(400, {"error": "expires_at is invalid"}) from None
        expires_at = iso(moment)
    username = call.text("username")
    if username and any(t.username == username for t in call.state.deploy_tokens.values()):
        problems["username"] = ["has already been taken"]
    if problems:
        raise HostError(400, {"message": problems})
    token = call.state.add_deploy_token(project, name=name, scopes=scopes, username=username, expires_at=expires_at)
    return _json(token.to_json(with_token=True), status=201)


async def _files(call: Call, project: Project, rest: list[str]) -> web.Response:
    method, state = call.request.method, call.state
    raw = len(rest) == 2 and rest[1] == "raw"
    if len(rest) != 1 and not raw:
        raise not_found("")
    path = rest[0]
    repo = state.repo_path(project)
    if method == "GET":
        call.need(READ_API)
        ref = call.text("ref", default=project.default_branch)
        found = repos.read_file(repo, ref, path)
        if found is None:
            raise not_found("File")
        commit, content = found
        if raw:
            return web.Response(body=content, content_type="text/plain")
        return _json({
            "file_name": path.rsplit("/", 1)[-1], "file_path": path, "size": len(content), "encoding": "base64",
            "content": base64.b64encode(content).decode(), "content_sha256": hashlib.sha256(content).hexdigest(),
            "ref": ref, "commit_id": commit, "last_commit_id": commit,
        })  # fmt: skip
    if method == "POST" and not raw:
        call.need(WRITE_API)
        _project(call, str(project.id), MAINTAINER)
        if project.archived:
            raise message(403, "403 Forbidden")
        branch = call.text("branch", required=True)
        content = call.text("content", required=True).encode()
        if call.text("encoding") == "base64":
            content = base64.b64decode(content)
        try:
            await repos.commit_file(
                repo,
                branch=branch,
                path=path,
                content=content,
                message=call.text("commit_message", required=True),
                author_name=call.text("author_name", default=call.principal.name),
                author_email=call.text("author_email", default=f"{call.principal.name}@example.invalid"),
            )
        except repos.CommitRefused as exc:
            raise HostError(400, {"message": str(exc)}) from None
        project.last_activity_at = iso(datetime.datetime.now(datetime.UTC))
        state.save()
        return _json({"file_path": path, "branch": branch}, status=201)
    raise message(405, "405 Method Not Allowed")
