"""The git host on GitLab, through python-gitlab (the only module that imports `gitlab`).

Configured by FLEET_GIT_HOST=gitlab, FLEET_GITLAB_URL, FLEET_GITLAB_TOKEN (an access token with the `api`
scope and the Owner role on the group; it may be given encrypted, `fernet:...`) and FLEET_GITLAB_GROUP.
Every call verifies TLS (against FLEET_GIT_CA_FILE when set), has a timeout (FLEET_GITLAB_TIMEOUT) and is
retried by python-gitlab on connection errors and 5xx answers with its exponential backoff
(`retry_transient_errors`, FLEET_GITLAB_MAX_RETRIES). A 429 is not slept on in the worker (python-gitlab
would sleep the whole Retry-After inside the call): it becomes GitHostUnavailable with `retry_after`, and
the workflow waits that long as a stored wake-up. The token is never logged and never in a message.

`ensure_project` in steps, each checking the world first, so a second call continues where the first
stopped: the group -> the project (created, or found) -> is it ours (the marker file naming this site,
or an empty repository, which is adopted) -> the marker commit -> `main` the default branch -> `main`
protected, no force push.
"""

import base64
import datetime
import json
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import gitlab
import requests
from django.conf import settings
from gitlab.exceptions import GitlabError
from gitlab.v4.objects import Project

from sites.githost.base import (
    BRANCH,
    MARKER_PATH,
    PUSH_ACCESS_LEVEL,
    DeployToken,
    DeployTokenInfo,
    ProjectInfo,
    deploy_token_name,
    marker_content,
    marker_message,
    marker_site,
)
from sites.githost.errors import (
    GitHostAccessDenied,
    GitHostError,
    GitHostGroupMissing,
    GitHostRefused,
    GitHostUnavailable,
    ProjectConflict,
    ProjectMissing,
)
from sites.githost.paths import path_problem

logger = logging.getLogger(__name__)

T = TypeVar("T")
COMMITTER = ("edgefleet", "edgefleet@edgefleet.invalid")


class GitLabHost:
    """Sites' projects in one GitLab group. Build with `GitLabHost.from_settings()`; safe to share."""

    kind = "gitlab"

    def __init__(
        self,
        *,
        url: str,
        token: str,
        group: str,
        ca_file: str = "",
        timeout: float = 10.0,
        max_retries: int = 2,
        deploy_token_days: int = 365,
    ):
        self.url = url.rstrip("/")
        self.group_path = group.strip("/")
        self.ca_file = ca_file
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.deploy_token_days = int(deploy_token_days)
        self.host = urlsplit(self.url).netloc or self.url
        self.__token = token
        self._gl: gitlab.Gitlab | None = None
        self._lock = threading.Lock()
        self._local = threading.local()

    @classmethod
    def from_settings(cls) -> "GitLabHost":
        from sites.crypto import setting_secret

        return cls(
            url=settings.FLEET_GITLAB_URL,
            token=setting_secret(settings.FLEET_GITLAB_TOKEN, "FLEET_GITLAB_TOKEN"),
            group=settings.FLEET_GITLAB_GROUP,
            ca_file=settings.FLEET_GIT_CA_FILE,
            timeout=settings.FLEET_GITLAB_TIMEOUT,
            max_retries=settings.FLEET_GITLAB_MAX_RETRIES,
            deploy_token_days=settings.FLEET_GITLAB_DEPLOY_TOKEN_DAYS,
        )

    def __repr__(self) -> str:
        return f"<GitLabHost {self.url} group={self.group_path}>"

    # --- the interface ------------------------------------------------------------------------------

    def clone_url(self, code: str) -> str:
        """GitLab's `http_url_to_repo` of the site's project: `<FLEET_GITLAB_URL>/<group>/<code>.git`."""
        return f"{self.url}/{self.group_path}/{code}.git"

    def find_project(self, code: str) -> ProjectInfo | None:
        self._check_code(code)
        project = self._project(code)
        return None if project is None else self._info(code, project)

    def ensure_project(self, code: str, *, mark: bool = True) -> ProjectInfo:
        self._check_code(code)
        changes: list[str] = []
        project = self._project(code)
        if project is None:
            project = self._create(code)
            changes.append("created")
        if project.archived:
            raise ProjectConflict(
                f"the project {self._path(code)} on the git host at {self.host} is archived (the site was "
                "decommissioned); unarchive it on the git host to onboard the site again"
            )
        marked = self._marker_site(code, project)
        if marked is None:
            if not project.empty_repo:
                raise ProjectConflict(
                    f"the project {self._path(code)} on the git host at {self.host} already holds commits that "
                    f"edgefleet did not write (no {MARKER_PATH} naming {code}); edgefleet will not take it "
                    "over: empty it, move it, or add that file by hand if it really is this site's"
                )
            if mark:
                self._write_marker(code, project)
                changes.append("marked" if "created" in changes else "adopted")
            elif "created" not in changes:
                changes.append("adopted")  # empty: the caller's first commit carries the marker
        elif marked != code:
            raise ProjectConflict(
                f"the project {self._path(code)} on the git host at {self.host} belongs to site {marked} (its "
                f"{MARKER_PATH} says so), not to {code}; edgefleet will not take it over"
            )
        if project.default_branch != BRANCH and not project.empty_repo:
            project.default_branch = BRANCH
            self._call(f"make {BRANCH} the default branch of {self._path(code)}", lambda: project.save(**self._opts))
            changes.append("default branch")
        if self._protect(code, project):
            changes.append("protected")
        if changes:
            logger.info("git host: %s %s (%s)", self._path(code), ", ".join(changes), self.host)
        info = self._info(code, project, refresh=bool(changes))
        return ProjectInfo(**{**info.__dict__, "changes": tuple(changes)})

    def issue_deploy_token(self, code: str, *, expires_at: datetime.datetime | None = None) -> DeployToken:
        project = self._existing(code, "issue a deploy token")
        expires = expires_at or datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=self.deploy_token_days)
        data = {
            "name": deploy_token_name(code),
            "scopes": ["read_repository"],
            "expires_at": expires.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z"),
            "username": "",
        }
        created = self._call(
            f"issue a deploy token for {self._path(code)}", lambda: project.deploytokens.create(data, **self._opts)
        )
        logger.info("git host: deploy token %s issued for %s", created.id, self._path(code))
        return DeployToken(
            id=int(created.id),
            name=str(created.name),
            username=str(created.username),
            expires_at=_moment(created.attributes.get("expires_at")),
            token=str(created.token),
        )

    def deploy_tokens(self, code: str) -> list[DeployTokenInfo]:
        project = self._project(code)
        if project is None:
            return []
        found = self._call(
            f"list the deploy tokens of {self._path(code)}",
            lambda: project.deploytokens.list(get_all=True, **self._opts),
        )
        return [
            DeployTokenInfo(
                id=int(t.id),
                name=str(t.name),
                username=str(t.username),
                expires_at=_moment(t.attributes.get("expires_at")),
                revoked=bool(t.attributes.get("revoked")),
                expired=bool(t.attributes.get("expired")),
                scopes=tuple(t.attributes.get("scopes") or ()),
            )
            for t in found
        ]

    def revoke_deploy_tokens(self, code: str, *, keep: int | None = None) -> list[int]:
        project = self._project(code)
        if project is None:
            return []
        revoked = []
        for token in self.deploy_tokens(code):
            if not token.ours or token.revoked or token.id == keep:
                continue
            doing = f"revoke deploy token {token.id} of {self._path(code)}"
            self._or_none(doing, lambda t=token: project.deploytokens.delete(t.id, **self._opts))  # type: ignore[misc]
            revoked.append(token.id)
        if revoked:
            logger.info("git host: deploy tokens %s of %s revoked", revoked, self._path(code))
        return revoked

    def archive_project(self, code: str) -> ProjectInfo | None:
        self._check_code(code)
        project = self._project(code)
        if project is None:
            return None
        if not project.archived:
            marked = self._marker_site(code, project)
            if marked != code and not project.empty_repo:
                raise ProjectConflict(
                    f"the project {self._path(code)} on the git host at {self.host} is not edgefleet's (no "
                    f"{MARKER_PATH} naming {code}); edgefleet will not archive it"
                )
            self._call(f"archive {self._path(code)}", lambda: project.archive(**self._opts))
            logger.info("git host: %s archived", self._path(code))
        return self._info(code, project)

    # --- steps --------------------------------------------------------------------------------------

    def _check_code(self, code: str) -> None:
        problem = path_problem(code)
        if problem:
            raise GitHostRefused(f"the site code {code!r} cannot name a project on the git host: {problem}")

    def _path(self, code: str) -> str:
        return f"{self.group_path}/{code}"

    @property
    def _opts(self) -> dict[str, Any]:
        return {"max_retries": self.max_retries, "obey_rate_limit": False}

    def _project(self, code: str) -> Project | None:
        gl = self._client()
        return self._or_none(f"look up {self._path(code)}", lambda: gl.projects.get(self._path(code), **self._opts))

    def _existing(self, code: str, doing: str) -> Project:
        self._check_code(code)
        project = self._project(code)
        if project is None:
            raise ProjectMissing(
                f"cannot {doing}: the site {code} has no project {self._path(code)} on the git host at {self.host}"
            )
        return project

    def _create(self, code: str) -> Project:
        gl = self._client()
        doing = f"look up the group {self.group_path}"
        group = self._or_none(doing, lambda: gl.groups.get(self.group_path, **self._opts))
        if group is None:
            raise GitHostGroupMissing(
                f"the group {self.group_path!r} does not exist on the git host at {self.host}, or edgefleet's "
                "token cannot see it: create it, or fix FLEET_GITLAB_GROUP"
            )
        data = {
            "name": code,
            "path": code,
            "namespace_id": group.id,
            "default_branch": BRANCH,
            "visibility": "private",
            "description": f"Desired state of site {code}, written by edgefleet",
            "initialize_with_readme": False,
        }
        try:
            return self._call(f"create {self._path(code)}", lambda: gl.projects.create(data, **self._opts))
        except GitHostRefused as exc:
            if "has already been taken" not in exc.detail:
                raise
        # Someone (or our own earlier call, whose answer was lost) created it meanwhile: use that one.
        project = self._project(code)
        if project is None:
            raise ProjectConflict(
                f"a project {self._path(code)} exists on the git host at {self.host} but edgefleet's token cannot "
                "see it; give the token access or remove that project"
            )
        return project

    def _marker_site(self, code: str, project: Project) -> str | None:
        if project.empty_repo:
            return None
        found = self._or_none(
            f"read {MARKER_PATH} of {self._path(code)}",
            lambda: project.files.get(MARKER_PATH, ref=BRANCH, **self._opts),
        )
        if found is None:
            return None
        return marker_site(base64.b64decode(str(found.content)))

    def _write_marker(self, code: str, project: Project) -> None:
        data = {
            "file_path": MARKER_PATH,
            "branch": BRANCH,
            "content": marker_content(code),
            "commit_message": marker_message(code),
            "author_name": COMMITTER[0],
            "author_email": COMMITTER[1],
        }
        try:
            self._call(f"write {MARKER_PATH} in {self._path(code)}", lambda: project.files.create(data, **self._opts))
        except GitHostRefused as exc:
            if "already exists" not in exc.detail:
                raise
            # Written by a concurrent call: it is ours only if it names this site.
            project.empty_repo = False
            if self._marker_site(code, project) != code:
                raise ProjectConflict(
                    f"{MARKER_PATH} appeared in {self._path(code)} while edgefleet was adopting it, naming another "
                    "site; edgefleet will not take it over"
                ) from None
        project.empty_repo = False

    def _protect(self, code: str, project: Project) -> bool:
        """`main` protected: maintainers push, nobody force-pushes. True when something had to change."""
        doing = f"protect {BRANCH} of {self._path(code)}"
        branch = self._or_none(doing, lambda: project.protectedbranches.get(BRANCH, **self._opts))
        if branch is None:
            data = {
                "name": BRANCH,
                "push_access_level": PUSH_ACCESS_LEVEL,
                "merge_access_level": PUSH_ACCESS_LEVEL,
                "allow_force_push": False,
            }
            try:
                self._call(doing, lambda: project.protectedbranches.create(data, **self._opts))
                return True
            except GitHostRefused as exc:
                if "already exists" not in exc.detail:
                    raise
                branch = self._call(doing, lambda: project.protectedbranches.get(BRANCH, **self._opts))
        if branch.attributes.get("allow_force_push"):
            branch.allow_force_push = False
            self._call(doing, lambda: branch.save(**self._opts))
            return True
        return False

    def _info(self, code: str, project: Project, *, refresh: bool = False) -> ProjectInfo:
        if refresh:
            gl = self._client()
            fresh = self._or_none(f"look up {self._path(code)}", lambda: gl.projects.get(project.id, **self._opts))
            project = fresh or project
        attrs = project.attributes
        return ProjectInfo(
            code=code,
            path=str(attrs.get("path_with_namespace") or self._path(code)),
            clone_url=str(attrs.get("http_url_to_repo") or self.clone_url(code)),
            default_branch=str(attrs.get("default_branch") or BRANCH),
            archived=bool(attrs.get("archived")),
            empty=bool(attrs.get("empty_repo")),
            id=int(attrs["id"]),
            web_url=str(attrs.get("web_url") or ""),
        )

    # --- talking to GitLab --------------------------------------------------------------------------

    def _client(self) -> gitlab.Gitlab:
        with self._lock:
            if self._gl is None:
                session = requests.Session()
                session.hooks["response"].append(self._remember)
                self._gl = gitlab.Gitlab(
                    self.url,
                    private_token=self.__token,
                    ssl_verify=self.ca_file or True,
                    timeout=self.timeout,
                    retry_transient_errors=True,
                    per_page=100,
                    session=session,
                )
            return self._gl

    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if response.status_code == 429:
            self._local.retry_after = response.headers.get("Retry-After")

    def _call(self, doing: str, operation: Callable[[], T]) -> T:
        self._local.retry_after = None
        try:
            return operation()
        except (GitlabError, requests.RequestException) as exc:
            raise self._failure(exc, doing) from exc

    def _or_none(self, doing: str, operation: Callable[[], T]) -> T | None:
        """`operation`, or None when GitLab answers 404."""
        try:
            return self._call(doing, operation)
        except GitHostError as exc:
            cause = exc.__cause__
            if isinstance(cause, GitlabError) and cause.response_code == 404:
                return None
            raise

    def _failure(self, exc: Exception, doing: str) -> GitHostError:
        where = f"the git host at {self.host}"
        if isinstance(exc, requests.exceptions.SSLError):
            return GitHostRefused(
                f"cannot verify the certificate of {where} while trying to {doing}: set FLEET_GIT_CA_FILE to the "
                "CA that signed it (verification is never switched off)",
                detail=_scrub(str(exc)),
            )
        if isinstance(exc, requests.Timeout):
            return GitHostUnavailable(
                f"{where} did not answer within {self.timeout:g}s while edgefleet tried to {doing}",
                detail=_scrub(str(exc)),
            )
        if isinstance(exc, requests.RequestException):
            return GitHostUnavailable(
                f"cannot reach {where} to {doing}: {_reason(exc)}",
                detail=_scrub(str(exc)),
            )
        assert isinstance(exc, GitlabError)  # noqa: S101 - the only other type _call catches
        code = exc.response_code or 0
        body = _body(exc)
        said = _said(body, exc)
        if code == 401:
            return GitHostAccessDenied(
                f"{where} refused edgefleet's token while it tried to {doing} (401: {said}); issue a new access "
                "token with the api scope and set FLEET_GITLAB_TOKEN",
                detail=said,
            )
        if code == 403:
            if body.get("error") == "insufficient_scope":
                hint = f"the token lacks the scope {body.get('scope') or 'api'!r}; issue one with the api scope"
            else:
                hint = f"the token's user needs the Owner role on the group {self.group_path}"
            return GitHostAccessDenied(f"{where} refused to let edgefleet {doing} (403: {said}); {hint}", detail=said)
        if code == 429:
            retry_after = _seconds(getattr(self._local, "retry_after", None))
            later = f"; try again in {retry_after:g}s" if retry_after else ""
            return GitHostUnavailable(
                f"{where} is rate-limiting edgefleet (429) while it tries to {doing}{later}",
                detail=said,
                retry_after=retry_after,
            )
        if code >= 500:
            return GitHostUnavailable(
                f"{where} failed ({code}) while edgefleet tried to {doing}, also after {self.max_retries} retries",
                detail=said,
            )
        return GitHostRefused(f"{where} refused to {doing} ({code}: {said})", detail=said)


def _body(exc: GitlabError) -> dict[str, Any]:
    raw = exc.response_body
    try:
        data = json.loads(raw) if raw else {}
    except (ValueError, TypeError):
        return {}
    return data if isinstance(data, dict) else {}


def _said(body: dict[str, Any], exc: GitlabError) -> str:
    """The host's own words, short: `message` (a string or per-field lists), else `error_description`."""
    message = body.get("message")
    if isinstance(message, dict):
        return "; ".join(f"{field} {', '.join(map(str, problems))}" for field, problems in message.items())[:300]
    if message:
        return str(message)[:300]
    if body.get("error_description"):
        return str(body["error_description"])[:300]
    said = exc.error_message
    if isinstance(said, bytes):
        said = said.decode(errors="replace")
    return (str(said).strip() or "no message")[:300]


def _reason(exc: Exception) -> str:
    text = str(exc)
    for needle, reason in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "the name does not resolve"),
        ("Temporary failure in name resolution", "the name does not resolve"),
        ("Connection reset", "the connection was reset"),
        ("RemoteDisconnected", "the connection was closed without an answer"),
        ("Connection aborted", "the connection was closed without an answer"),
    ):
        if needle in text:
            return reason
    return "the connection failed"


def _scrub(text: str) -> str:
    return text[:500]


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


def _moment(value: Any) -> datetime.datetime | None:
    if not value:
        return None
    try:
        moment = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)
