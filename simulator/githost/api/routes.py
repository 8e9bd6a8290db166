"""The API's routes: version, user and token self-lookup, groups and projects (list, create, update,
archive), handing a project's protected branches, deploy tokens and files to `project_parts`."""

from urllib.parse import unquote

from aiohttp import web

from simulator.githost.api.call import API_PREFIX, Call, group_of, json_response, paginate, project_of
from simulator.githost.api.project_parts import deploy_tokens, files, protected_branches, split_list
from simulator.githost.api.render import group_json, project_json
from simulator.githost.errors import HostError, message, not_found
from simulator.githost.records import DEVELOPER, GUEST, MAINTAINER, OWNER, READ_API, WRITE_API, Principal, Project
from simulator.githost.state import GitHostState
from simulator.gitrepo import init_bare

VERSION = {"version": "17.5.2", "revision": "edgefleet-simulator"}


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
        return json_response(VERSION)
    if head == "user" and not rest and method == "GET":
        call.need(READ_API + ("read_user",))
        user = {"id": 1 if principal.admin else 2, "username": principal.name, "name": principal.name}
        bot = principal.project_id is not None
        return json_response({**user, "state": "active", "is_admin": principal.admin, "bot": bot})
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
    return json_response({"id": token.id, "name": token.name, "revoked": token.revoked, "created_at": token.created_at,
                  "scopes": token.scopes, "user_id": token.user_id, "last_used_at": token.last_used_at,
                  "active": not token.revoked and not token.expired(), "expires_at": token.expires_at})  # fmt: skip


def _groups(call: Call, rest: list[str]) -> web.Response:
    call.need(READ_API)
    if call.request.method != "GET":
        raise message(405, "405 Method Not Allowed")
    group = group_of(call, rest[0])
    if len(rest) == 1:
        return json_response(group_json(call.state, group))
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
            return json_response(project_json(state, project_of(call, rest[0])))
        if method == "PUT":
            call.need(WRITE_API)
            project = project_of(call, rest[0], MAINTAINER)
            if "description" in call.params:
                project.description = call.text("description")
            if "topics" in call.params or "tag_list" in call.params:
                project.topics = split_list(call.params.get("topics", call.params.get("tag_list")))
            state.save()
            return json_response(project_json(state, project))
        raise message(405, "405 Method Not Allowed")
    action = rest[1]
    if action in ("archive", "unarchive") and len(rest) == 2 and method == "POST":
        call.need(WRITE_API)
        project = project_of(call, rest[0], OWNER)
        project.archived = action == "archive"
        state.save()
        return json_response(project_json(state, project), status=201)
    if action == "protected_branches":
        return protected_branches(call, project_of(call, rest[0]), rest[2:])
    if action == "deploy_tokens":
        return deploy_tokens(call, project_of(call, rest[0]), rest[2:])
    if action == "repository" and len(rest) >= 4 and rest[2] == "files":
        return await files(call, project_of(call, rest[0]), rest[3:])
    raise not_found("")


def _create_project(call: Call) -> web.Response:
    call.need(WRITE_API)
    state, principal = call.state, call.principal
    name, path = call.text("name"), call.text("path")
    if not name and not path:
        raise HostError(400, {"error": "name, path are missing, at least one parameter must be provided"})
    name, path = name or path, path or name
    namespace_ref = call.text("namespace_id") or call.text("namespace")
    namespace = group_of(call, namespace_ref) if namespace_ref else None
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
        topics=split_list(call.params.get("topics", call.params.get("tag_list"))),
    )
    repos_dir = state.repo_path(project)
    init_bare(repos_dir)  # a site's repository exists already, and keeps what it holds
    return json_response(project_json(state, project), status=201)
