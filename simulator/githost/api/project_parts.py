"""A project's parts in the API: protected branches, deploy tokens, and repository files (read, raw,
commit)."""

import base64
import datetime
import hashlib
from typing import Any

from aiohttp import web

from simulator.githost import repos
from simulator.githost.api.call import Call, json_response, paginate, project_of
from simulator.githost.api.render import protected_json
from simulator.githost.errors import HostError, message, not_found
from simulator.githost.records import (
    DEPLOY_SCOPES,
    MAINTAINER,
    READ_API,
    WRITE_API,
    Project,
    ProtectedBranch,
    iso,
    parse_moment,
)


def split_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v.strip() for v in str(value or "").split(",") if v.strip()]


def protected_branches(call: Call, project: Project, rest: list[str]) -> web.Response:
    method, state = call.request.method, call.state
    if method == "GET":
        call.need(READ_API)
        if not rest:
            return paginate(call, [protected_json(b) for b in project.protected_branches])
        branch = next((b for b in project.protected_branches if b.name == rest[0]), None)
        if branch is None:
            raise not_found("Protected Branch")
        return json_response(protected_json(branch))
    call.need(WRITE_API)
    project_of(call, str(project.id), MAINTAINER)
    if method == "POST" and not rest:
        name = call.text("name", required=True)
        if any(b.name == name for b in project.protected_branches):
            raise message(409, f"Protected branch '{name}' already exists")
        branch = ProtectedBranch(
            id=state.allocate_id("branch"),
            name=name,
            push_access_level=call.level("push_access_level", MAINTAINER),
            merge_access_level=call.level("merge_access_level", MAINTAINER),
            allow_force_push=call.flag("allow_force_push"),
        )
        project.protected_branches.append(branch)
        state.save()
        return json_response(protected_json(branch), status=201)
    if len(rest) == 1:
        branch = next((b for b in project.protected_branches if b.name == rest[0]), None)
        if branch is None:
            raise not_found("Protected Branch")
        if method == "PATCH":
            if "allow_force_push" in call.params:
                branch.allow_force_push = call.flag("allow_force_push")
            state.save()
            return json_response(protected_json(branch))
        if method == "DELETE":
            project.protected_branches.remove(branch)
            state.save()
            return web.Response(status=204)
    raise message(405, "405 Method Not Allowed")


def deploy_tokens(call: Call, project: Project, rest: list[str]) -> web.Response:
    method, state = call.request.method, call.state
    call.need(READ_API if method == "GET" else WRITE_API)
    project_of(call, str(project.id), MAINTAINER)
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
        return json_response(token.to_json())
    if method == "DELETE":
        # GitLab revokes the token and drops it from the project: it never opens anything again.
        token.revoked = True
        state.save()
        return web.Response(status=204)
    raise message(405, "405 Method Not Allowed")


def _create_deploy_token(call: Call, project: Project) -> web.Response:
    name = call.text("name")
    scopes = split_list(call.params.get("scopes"))
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
    return json_response(token.to_json(with_token=True), status=201)


async def files(call: Call, project: Project, rest: list[str]) -> web.Response:
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
        return json_response({
            "file_name": path.rsplit("/", 1)[-1], "file_path": path, "size": len(content), "encoding": "base64",
            "content": base64.b64encode(content).decode(), "content_sha256": hashlib.sha256(content).hexdigest(),
            "ref": ref, "commit_id": commit, "last_commit_id": commit,
        })  # fmt: skip
    if method == "POST" and not raw:
        call.need(WRITE_API)
        project_of(call, str(project.id), MAINTAINER)
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
        return json_response({"file_path": path, "branch": branch}, status=201)
    raise message(405, "405 Method Not Allowed")
