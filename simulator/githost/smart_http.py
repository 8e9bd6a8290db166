"""git's smart HTTP protocol for the git host's projects, answered by git itself: `git http-backend` runs as
a CGI program for each request (asyncio subprocess), with the request body streamed to it and its answer
streamed back, under a time limit.

    GET  /gitlab/<group>/<project>.git/info/refs?service=git-upload-pack|git-receive-pack
    POST /gitlab/<group>/<project>.git/git-upload-pack | git-receive-pack

Authentication is HTTP Basic, as on GitLab: the password is an access token (any user name; it reads with
`read_repository`, `write_repository` or `api`, and writes with `write_repository` or `api` and at least
the role the protected branch asks for) or a deploy token (its own user name; reads its one project,
never writes). No credentials: 401 with `WWW-Authenticate: Basic realm="GitLab"` (git then asks for
them); credentials that open nothing: 401; a project the caller cannot see: 404; a write it may not do:
403. Pushing is enabled in git (`http.receivepack`) only for callers allowed to write, and a protected
branch that refuses force pushes becomes `receive.denyNonFastForwards` / `receive.denyDeletes`.
"""

import asyncio
import base64
import binascii
import logging
import os
import re
from pathlib import Path

from aiohttp import web

from simulator.githost.records import DEVELOPER, GIT_WRITE, Principal, Project, may_read
from simulator.githost.state import GitHostState

log = logging.getLogger(__name__)

GIT_URL_RE = re.compile(
    r"^/gitlab/(?P<project>[A-Za-z0-9_.~-]+(?:/[A-Za-z0-9_.~-]+)+)/(?P<rest>info/refs|git-upload-pack|git-receive-pack)$"
)
SERVICES = ("git-upload-pack", "git-receive-pack")
CHUNK = 64 * 1024
NOT_FOUND = "The project you were looking for could not be found or you don't have permission to view it.\n"


def is_git_request(path: str) -> bool:
    return GIT_URL_RE.match(path) is not None


def _text(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=text, headers=headers)


def _credentials(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    return (username, password) if colon else None


def _write_refusal(principal: Principal, project: Project) -> str | None:
    """Why `principal` may not push to `project`, or None."""
    if project.archived:
        return "You are not allowed to push code to an archived project.\n"
    if principal.kind == "deploy" or not principal.has_scope(GIT_WRITE):
        return "You are not allowed to upload code.\n"
    needed = max([DEVELOPER] + [b.push_access_level or 60 for b in project.protected_branches])
    if principal.level_on(project) < needed:
        return "You are not allowed to push code to this project.\n"
    return None


async def handle(state: GitHostState, request: web.Request, timeout: float) -> web.StreamResponse:
    match = GIT_URL_RE.match(request.path)
    if match is None:
        return _text(404, NOT_FOUND)
    rest = match.group("rest")
    service = request.query.get("service", "") if rest == "info/refs" else rest
    if service not in SERVICES:
        return _text(403, "The dumb HTTP protocol is not served; use a git client that speaks smart HTTP.\n")
    if (request.method == "GET") != (rest == "info/refs"):
        return _text(405, "Method Not Allowed\n")
    credentials = _credentials(request)
    challenge = {"WWW-Authenticate": 'Basic realm="GitLab"'}
    if credentials is None:
        return _text(401, "HTTP Basic: Access denied\n", challenge)
    principal = state.git_principal(*credentials)
    if principal is None:
        return _text(401, "HTTP Basic: Access denied. If a password was provided for Git authentication, the "
                          "password was incorrect or you're required to use a token instead of a password.\n",
                     challenge)  # fmt: skip
    project = state.find_project(match.group("project").removesuffix(".git"))
    if project is None or not may_read(principal, project):
        return _text(404, NOT_FOUND)
    writer = service == "git-receive-pack"
    if writer:
        refusal = _write_refusal(principal, project)
        if refusal:
            return _text(403, refusal)
    repo = state.repo_path(project)
    if not (repo / "HEAD").exists():
        return _text(404, NOT_FOUND)
    return await _run_backend(state, request, project, repo, rest, principal, writer, timeout)


async def _run_backend(
    state: GitHostState,
    request: web.Request,
    project: Project,
    repo: Path,
    rest: str,
    principal: Principal,
    writer: bool,
    timeout: float,
) -> web.StreamResponse:
    protected = next((b for b in project.protected_branches if not b.allow_force_push), None) is not None
    config = [
        ("http.receivepack", "true" if writer else "false"),
        ("http.uploadpack", "true"),
        ("receive.denyNonFastForwards", "true" if protected else "false"),
        ("receive.denyDeletes", "true" if protected else "false"),
        ("core.hooksPath", os.devnull),
    ]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_PROJECT_ROOT": str(state.repos_dir),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": "/" + repo.relative_to(state.repos_dir).as_posix() + "/" + rest,
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": request.query_string,
        "CONTENT_TYPE": request.headers.get("Content-Type", ""),
        "REMOTE_USER": principal.name,
        "REMOTE_ADDR": request.remote or "",
        "GIT_CONFIG_COUNT": str(len(config)),
    }
    # aiohttp has already undone any Content-Encoding of the body, and the body ends where stdin ends, so
    # neither CONTENT_LENGTH nor HTTP_CONTENT_ENCODING is passed on.
    if request.headers.get("Git-Protocol"):
        env["GIT_PROTOCOL"] = request.headers["Git-Protocol"]
    for index, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{index}"], env[f"GIT_CONFIG_VALUE_{index}"] = key, value
    process = await asyncio.create_subprocess_exec(
        "git",
        "http-backend",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    feeder = asyncio.create_task(_feed(request, process))
    assert process.stdout is not None and process.stderr is not None  # noqa: S101 - created with pipes
    errors = asyncio.create_task(process.stderr.read())
    response: web.StreamResponse | None = None
    try:
        head = b""
        while b"\r\n\r\n" not in head and b"\n\n" not in head:
            chunk = await asyncio.wait_for(process.stdout.read(CHUNK), max(0.1, deadline - loop.time()))
            if not chunk:
                break
            head += chunk
        header_text, body = _split_headers(head)
        status, headers = _parse_cgi_headers(header_text)
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        if body:
            await response.write(body)
        while True:
            chunk = await asyncio.wait_for(process.stdout.read(CHUNK), max(0.1, deadline - loop.time()))
            if not chunk:
                break
            await response.write(chunk)
        await asyncio.wait_for(process.wait(), max(0.1, deadline - loop.time()))
        await response.write_eof()
        return response
    except TimeoutError:
        log.warning("git http-backend for %s took longer than %.0fs: stopped", state.full_path(project), timeout)
        if response is None:
            return _text(504, "git took too long to answer\n")
        if request.transport is not None:
            request.transport.abort()
        return response
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        feeder.cancel()
        stderr = b""
        try:
            stderr = await asyncio.wait_for(errors, 1.0)
        except (TimeoutError, asyncio.CancelledError):
            errors.cancel()
        if stderr.strip():
            text = stderr.decode(errors="replace").strip()
            log.info("git http-backend %s %s: %s", request.method, request.path, text)


async def _feed(request: web.Request, process: asyncio.subprocess.Process) -> None:
    stdin = process.stdin
    assert stdin is not None  # noqa: S101 - created with a pipe
    try:
        while True:
            chunk = await request.content.read(CHUNK)
            if not chunk:
                break
            stdin.write(chunk)
            await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # git stopped reading (it refused the request); its answer says why
    finally:
        if not stdin.is_closing():
            stdin.close()


def _split_headers(data: bytes) -> tuple[str, bytes]:
    for separator in (b"\r\n\r\n", b"\n\n"):
        if separator in data:
            head, body = data.split(separator, 1)
            return head.decode("latin-1"), body
    return data.decode("latin-1"), b""


def _parse_cgi_headers(text: str) -> tuple[int, dict[str, str]]:
    status, headers = 200, {}
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if not colon:
            continue
        if name.strip().lower() == "status":
            try:
                status = int(value.strip().split()[0])
            except (ValueError, IndexError):
                status = 500
        else:
            headers[name.strip()] = value.strip()
    return status, headers
