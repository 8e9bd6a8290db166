"""The git host adapter: where each site's repository lives, and the edge's credential for it.

    from sites.githost import git_host

    host = git_host()                       # FLEET_GIT_HOST: GitLabHost or LocalHost
    project = host.ensure_project("TX-0412")  # idempotent: created, adopted, marked, protected
    token = host.issue_deploy_token("TX-0412")  # read-only, that one project (None for local)
    host.revoke_deploy_tokens("TX-0412", keep=token.id)
    host.archive_project("TX-0412")

The interface and its values are in `base`, the errors in `errors` (each with `transient` and
`retry_after`, for the one place a workflow turns them into outcomes), GitLab's path rules in `paths`.
Only `gitlab.py` and `gitlab_api.py` import python-gitlab; `SiteRepo` (sites/repos/) still does every git write.
"""

from functools import lru_cache

from django.conf import settings

from sites.githost.base import DeployToken, DeployTokenInfo, GitHost, ProjectInfo
from sites.githost.errors import (
    GitHostAccessDenied,
    GitHostError,
    GitHostGroupMissing,
    GitHostRefused,
    GitHostUnavailable,
    ProjectConflict,
    ProjectMissing,
)

__all__ = [
    "DeployToken",
    "DeployTokenInfo",
    "GitHost",
    "GitHostAccessDenied",
    "GitHostError",
    "GitHostGroupMissing",
    "GitHostRefused",
    "GitHostUnavailable",
    "ProjectConflict",
    "ProjectInfo",
    "ProjectMissing",
    "git_host",
]


def git_host() -> GitHost:
    """The configured git host, one per process and configuration (it keeps its HTTP session)."""
    return _git_host(
        settings.FLEET_GIT_HOST,
        settings.FLEET_GITLAB_URL,
        settings.FLEET_GITLAB_TOKEN,
        settings.FLEET_GITLAB_GROUP,
        settings.FLEET_GIT_CA_FILE,
        str(settings.REPO_ROOT),
    )


@lru_cache(maxsize=4)
def _git_host(kind: str, *key: str) -> GitHost:
    if kind == "gitlab":
        from sites.githost.gitlab import GitLabHost

        return GitLabHost.from_settings()
    from sites.githost.local import LocalHost

    return LocalHost.from_settings()
