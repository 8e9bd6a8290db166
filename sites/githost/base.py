"""The git host interface and the small values it returns (STYLE.md: "Adapters return small values").

A site's repository lives on a git host: one project per site, `<group>/<code>`. The interface is what
onboarding and decommissioning need, each call idempotent so that a workflow step can run it again:

- `ensure_project(code)`: the project exists under the configured group, is edgefleet's (it carries the
  marker commit below), has `main` as its default branch and `main` protected from force pushes.
  Calling it again after a failure continues where it stopped; it never half-creates. `mark=False`
  leaves an empty project empty for a caller whose own first commit carries the marker (onboarding).
- `issue_deploy_token(code)` / `deploy_tokens(code)` / `revoke_deploy_tokens(code, keep=...)`: a
  read-only credential for the edge, scoped to that one project. Rotation is: issue a new one, give it
  to the edge, then revoke the others with `keep=<the new id>`, so the edge is never without one.
- `archive_project(code)`: read-only from then on (a decommissioned site); its history is kept.
- `clone_url(code)`: what `Site.repo_url` names, for the control plane's writes and the edge's reads.

The marker: the first commit edgefleet makes in a site's project adds the file `.edgefleet/site` naming
the site (trailer `Edgefleet-Site: <code>`). A project that exists already is adopted only when it is
empty or carries that marker for the same site; anything else is a `ProjectConflict`.
"""

import datetime
from dataclasses import dataclass, field
from typing import Protocol

MARKER_PATH = ".edgefleet/site"
MARKER_TRAILER = "Edgefleet-Site"
BRANCH = "main"
DEPLOY_TOKEN_PREFIX = "edgefleet-edge"  # noqa: S105 - a name, not a secret
# Maintainers push to main (edgefleet's token is one); developers do not; nobody force-pushes.
PUSH_ACCESS_LEVEL = 40


def marker_content(code: str) -> str:
    return (
        f"site: {code}\n"
        "# This repository holds the desired state of the site named above. edgefleet writes it; the\n"
        "# site's GitOps agent applies it. Do not remove this file: it tells edgefleet the project is its own.\n"
    )


def marker_message(code: str) -> str:
    return f"Mark this repository as the desired state of site {code}\n\n{MARKER_TRAILER}: {code}\n"


def marker_site(content: bytes | str) -> str | None:
    """The site a marker file names, or None when it names none."""
    text = content.decode(errors="replace") if isinstance(content, bytes) else content
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon and key.strip() == "site":
            return value.strip() or None
    return None


def deploy_token_name(code: str) -> str:
    return f"{DEPLOY_TOKEN_PREFIX}-{code}"


@dataclass(frozen=True)
class ProjectInfo:
    """A site's project as the host describes it. `clone_url` is the HTTPS (or local) URL for git."""

    code: str
    path: str  # `<group>/<code>` (a local path for the local host)
    clone_url: str
    default_branch: str = BRANCH
    archived: bool = False
    empty: bool = False
    id: int | None = None
    web_url: str = ""
    #: What ensure_project did this time ("created", "adopted", "marked", "protected", ...); empty: nothing.
    changes: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeployTokenInfo:
    """A deploy token as listed (never its secret)."""

    id: int
    name: str
    username: str
    expires_at: datetime.datetime | None
    revoked: bool
    expired: bool
    scopes: tuple[str, ...]

    @property
    def active(self) -> bool:
        return not self.revoked and not self.expired

    @property
    def ours(self) -> bool:
        return self.name.startswith(DEPLOY_TOKEN_PREFIX)


@dataclass(frozen=True)
class DeployToken:
    """A new deploy token with its secret, which the host shows once: hand it to the edge, store nothing
    else. `username` and `token` are the HTTP Basic credentials git uses."""

    id: int
    name: str
    username: str
    expires_at: datetime.datetime | None
    token: str = field(repr=False)


class GitHost(Protocol):
    """Where the sites' repositories live (FLEET_GIT_HOST). Every method is idempotent and raises only
    sites.githost.errors.GitHostError subclasses."""

    kind: str

    def ensure_project(self, code: str, *, mark: bool = True) -> ProjectInfo:
        """The site's project, created or adopted, protected. With `mark=False` an empty project stays
        empty (no marker commit): the caller's first commit must carry the marker file itself, as
        onboarding's base-stack commit does, so the project's first commit is the whole base stack."""
        ...

    def find_project(self, code: str) -> ProjectInfo | None: ...

    def clone_url(self, code: str) -> str: ...

    def issue_deploy_token(self, code: str, *, expires_at: datetime.datetime | None = None) -> DeployToken | None:
        """A new read-only token for the edge; None when the host needs none (local repositories)."""
        ...

    def deploy_tokens(self, code: str) -> list[DeployTokenInfo]: ...

    def revoke_deploy_tokens(self, code: str, *, keep: int | None = None) -> list[int]:
        """Revoke every active edgefleet deploy token of the site's project except `keep`; the ids revoked."""
        ...

    def archive_project(self, code: str) -> ProjectInfo | None:
        """Make the project read-only; None when there is no project (nothing to archive)."""
        ...
