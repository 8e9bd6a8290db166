"""The git adapter for one site: `SiteRepo` over GitPython, the only code in edgefleet that imports `git`.

Layers, each importing only those before it: `errors`, `values` (Author, CommitResult, clean_path),
`runner` (GitRunner: every git process, its hermetic environment, timeouts, scrubbing), `clone` (the
git steps of one session), `session` (WorkingClone: the file lock, health check, stale locks) and
`site_repo` (SiteRepo: the operations). Import from here: `from sites.repos import SiteRepo, ...`.
Design and reasons: docs/ARCHITECTURE.md, "Talking to a site" and "Git repositories and the token".
"""

from sites.repos.errors import RepoError, RepoFailure, RepoUnavailable, UnsafePath, UnsafeUrl
from sites.repos.runner import GitCredentials
from sites.repos.site_repo import SiteRepo
from sites.repos.values import (
    BRANCH,
    COMMITTER,
    LOCAL_MAIN,
    REMOTE_MAIN,
    Author,
    CommitResult,
    MarkedCommit,
    clean_path,
)

__all__ = [
    "BRANCH",
    "COMMITTER",
    "LOCAL_MAIN",
    "REMOTE_MAIN",
    "Author",
    "CommitResult",
    "GitCredentials",
    "MarkedCommit",
    "RepoError",
    "RepoFailure",
    "RepoUnavailable",
    "SiteRepo",
    "UnsafePath",
    "UnsafeUrl",
    "clean_path",
]
