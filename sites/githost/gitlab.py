"""The git host on GitLab (`GitLabHost`), configured by FLEET_GIT_HOST=gitlab, FLEET_GITLAB_URL,
FLEET_GITLAB_TOKEN (the `api` scope and the Owner role on the group; `fernet:...` for an encrypted one)
and FLEET_GITLAB_GROUP. `ensure_project` goes in steps that each check the world first, so a second
call continues where the first stopped: the group, the project (created or found), is it ours (the
marker file naming this site, or an empty repository, adopted), the marker commit, `main` the default
branch, `main` protected with no force push. Calls go through `sites.githost.gitlab_api`."""

import base64
import datetime
import logging
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
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
    GitHostGroupMissing,
    GitHostRefused,
    ProjectConflict,
    ProjectMissing,
)
from sites.githost.gitlab_api import GitLabApi
from sites.githost.paths import path_problem

logger = logging.getLogger(__name__)

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
        self._api = GitLabApi(
            url=self.url,
            token=token,
            group_path=self.group_path,
            ca_file=ca_file,
            timeout=self.timeout,
            max_retries=self.max_retries,
        )

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
            self._api.call(
                f"make {BRANCH} the default branch of {self._path(code)}", lambda: project.save(**self._api.opts)
            )
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
        created = self._api.call(
            f"issue a deploy token for {self._path(code)}", lambda: project.deploytokens.create(data, **self._api.opts)
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
        found = self._api.call(
            f"list the deploy tokens of {self._path(code)}",
            lambda: project.deploytokens.list(get_all=True, **self._api.opts),
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
            self._api.or_none(doing, lambda t=token: project.deploytokens.delete(t.id, **self._api.opts))  # type: ignore[misc]
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
            self._api.call(f"archive {self._path(code)}", lambda: project.archive(**self._api.opts))
            logger.info("git host: %s archived", self._path(code))
        return self._info(code, project)

    # --- steps --------------------------------------------------------------------------------------

    def _check_code(self, code: str) -> None:
        problem = path_problem(code)
        if problem:
            raise GitHostRefused(f"the site code {code!r} cannot name a project on the git host: {problem}")

    def _path(self, code: str) -> str:
        return f"{self.group_path}/{code}"

    def _project(self, code: str) -> Project | None:
        gl = self._api.client()
        return self._api.or_none(
            f"look up {self._path(code)}", lambda: gl.projects.get(self._path(code), **self._api.opts)
        )

    def _existing(self, code: str, doing: str) -> Project:
        self._check_code(code)
        project = self._project(code)
        if project is None:
            raise ProjectMissing(
                f"cannot {doing}: the site {code} has no project {self._path(code)} on the git host at {self.host}"
            )
        return project

    def _create(self, code: str) -> Project:
        gl = self._api.client()
        doing = f"look up the group {self.group_path}"
        group = self._api.or_none(doing, lambda: gl.groups.get(self.group_path, **self._api.opts))
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
            return self._api.call(f"create {self._path(code)}", lambda: gl.projects.create(data, **self._api.opts))
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
        found = self._api.or_none(
            f"read {MARKER_PATH} of {self._path(code)}",
            lambda: project.files.get(MARKER_PATH, ref=BRANCH, **self._api.opts),
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
            self._api.call(
                f"write {MARKER_PATH} in {self._path(code)}", lambda: project.files.create(data, **self._api.opts)
            )
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
        branch = self._api.or_none(doing, lambda: project.protectedbranches.get(BRANCH, **self._api.opts))
        if branch is None:
            data = {
                "name": BRANCH,
                "push_access_level": PUSH_ACCESS_LEVEL,
                "merge_access_level": PUSH_ACCESS_LEVEL,
                "allow_force_push": False,
            }
            try:
                self._api.call(doing, lambda: project.protectedbranches.create(data, **self._api.opts))
                return True
            except GitHostRefused as exc:
                if "already exists" not in exc.detail:
                    raise
                branch = self._api.call(doing, lambda: project.protectedbranches.get(BRANCH, **self._api.opts))
        if branch.attributes.get("allow_force_push"):
            branch.allow_force_push = False
            self._api.call(doing, lambda: branch.save(**self._api.opts))
            return True
        return False

    def _info(self, code: str, project: Project, *, refresh: bool = False) -> ProjectInfo:
        if refresh:
            gl = self._api.client()
            fresh = self._api.or_none(
                f"look up {self._path(code)}", lambda: gl.projects.get(project.id, **self._api.opts)
            )
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


def _moment(value: Any) -> datetime.datetime | None:
    if not value:
        return None
    try:
        moment = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)
