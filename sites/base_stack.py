"""The base stack every site runs, as the sites app sees it: what onboarding commits, asked of a provider.

The base stack is the platform's part of a site's repository: the Flux `GitRepository` and `Kustomization`
that point the edge at its repository (the deploy token in a Secret beside them), a Vector agent shipping
the site's logs to FLEET_LOG_SINK, a metrics agent and the `kube-system` namespace policy. It is an
`Application` owned by the platform (`base-stack`) whose releases are rendered from
`templates/base-stack/<version>/` with the same sandboxed renderer as every release, so upgrading it across
the fleet is a rollout with waves and gates, and its files live where any release's do
(`apps/base-stack/`).

Rendering belongs to the rollouts app, and dependencies point `rollouts -> sites`: sites asks the question
here and the rollouts app registers the answer when it is ready (rollouts/base_stack.py, from
RolloutsConfig.ready), as sites.rehydration does for restore targets. With no provider registered,
onboarding fails with a sentence rather than committing something else.

What the base stack is told about the platform (`platform_values`, the values of its releases): where the
edge reads its repository (`edge_repo_url`: the git host's clone URL, a `file://` URL for local
repositories), the name of the Secret that holds the edge's deploy token (none for local repositories),
and the log sink.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from sites.models import Site

APPLICATION = "base-stack"
OWNED_PREFIX = f"apps/{APPLICATION}"
# The Secret (namespace flux-system) Flux's GitRepository reads the deploy token from: `username` and
# `password`, Flux's basic-auth Secret. Applied to the cluster by onboarding, never committed to git.
EDGE_SECRET = "site-git"  # noqa: S105 - a name, not a secret
EDGE_NAMESPACE = "flux-system"
EDGE_SOURCE = "site"  # the GitRepository and the Kustomization `site` (the sync contract)


class BaseStackUnavailable(Exception):
    """The base stack cannot be given (no provider registered, no template version); `message` says why."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class BaseStack:
    """The base stack rendered for one site: `{repository path: text}` (every path under OWNED_PREFIX),
    from the release `release_id` of the platform's `base-stack` application at `version`."""

    version: str
    files: dict[str, str] = field(repr=False)
    release_id: int | None = None


BaseStackProvider = Callable[["Site"], BaseStack]

_provider: BaseStackProvider | None = None


def register_base_stack(provider: BaseStackProvider) -> None:
    """Install the function that renders the base stack for a site (the rollouts app, once ready)."""
    global _provider  # one provider per process, set when the apps are ready
    _provider = provider


def base_stack_for(site: "Site") -> BaseStack:
    """The base stack for `site`, checked: every path under OWNED_PREFIX. BaseStackUnavailable without a
    provider; the provider's own refusals (fleet.errors.Invalid for a template that does not render) pass."""
    if _provider is None:
        raise BaseStackUnavailable(
            "no base stack provider is registered (the rollouts app renders it): nothing was committed"
        )
    stack = _provider(site)
    outside = sorted(path for path in stack.files if not path.startswith(OWNED_PREFIX + "/"))
    if outside:
        raise BaseStackUnavailable(f"the base stack names files outside {OWNED_PREFIX}/: {', '.join(outside[:3])}")
    return stack


def edge_base_url() -> str:
    """Where the edge reads the sites' repositories, up to the site's code: `<url>/<group>/` on GitLab, a
    `file://` directory for local repositories (the embedded set-up, whose simulated edge shares the disk)."""
    if settings.FLEET_GIT_HOST == "gitlab":
        return f"{settings.FLEET_GITLAB_URL}/{settings.FLEET_GITLAB_GROUP}/"
    return Path(settings.REPO_ROOT).resolve().as_uri() + "/"


def edge_repo_url(code: str) -> str:
    """The URL the site's GitRepository names: the same project the control plane writes (`clone_url`)."""
    return f"{edge_base_url()}{code}.git"


def edge_secret_name() -> str:
    """The Secret holding the edge's deploy token, or "" when the host needs none (local repositories)."""
    return EDGE_SECRET if settings.FLEET_GIT_HOST == "gitlab" else ""


def platform_values() -> dict[str, Any]:
    """The values the base stack's templates are rendered with (its release's `values`): settings only,
    no secret. A change (another log sink, another git host) is a new base-stack release."""
    return {
        "git": {"base_url": edge_base_url(), "branch": "main", "secret": edge_secret_name()},
        "log_sink": settings.FLEET_LOG_SINK,
    }
