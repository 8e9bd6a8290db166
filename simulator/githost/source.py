"""Which repository a site's GitOps agent reads, from its GitRepository `site` (flux-system), as Flux's
source-controller decides it: `spec.url` and, for HTTPS, the Secret named by `spec.secretRef` (`username`
and `password`, Flux's basic-auth Secret).

- a `file://` URL (what every site starts with) or a path: that bare repository, inside the state
  directory;
- a URL of the simulator's own git host (`https://HOST:PORT/gitlab/<group>/<project>.git`): that
  project's repository, if the Secret's credentials may read it right now (a deploy token of that
  project, not revoked or expired; an access token with a read scope), and the git host is up;
- anything else: not reachable from the simulator.

The agent still reads the repository from disk (one stat() per poll), so a fleet of thousands costs no
HTTP; but the credentials are checked as a fetch would check them, every few seconds, so a revoked deploy
token stops the edge from seeing new commits, as it would a real Flux.
"""

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from simulator.githost.records import may_read

if TYPE_CHECKING:
    from simulator.site import Site


@dataclass(frozen=True)
class Source:
    """A repository to read (`path`), or why there is none (`error`, Flux's words). `remote`: through the
    git host, so the credentials are checked again now and then."""

    path: Path | None
    error: str | None = None
    remote: bool = False


def resolve(site: "Site", spec: dict[str, Any]) -> Source:
    url = spec.get("url")
    if not isinstance(url, str) or not url:
        return Source(None, "invalid source: spec.url is empty")
    fleet = site.fleet
    host = fleet.githost
    if host.url and url.startswith(host.url + "/"):
        return _from_git_host(site, url, spec)
    if url.startswith("file://") or url.startswith("/"):
        path = Path(unquote(urlsplit(url).path if url.startswith("file://") else url)).resolve()
        if not path.is_relative_to(fleet.state_dir.resolve()):
            return Source(None, f"unable to clone '{url}': outside the simulator's state directory")
        return Source(path)
    return Source(None, f"unable to clone '{url}': the simulator reaches only its own git host")


def _from_git_host(site: "Site", url: str, spec: dict[str, Any]) -> Source:
    host = site.fleet.githost
    failed = f"failed to checkout and determine revision: unable to clone '{url}'"
    if host.down():
        return Source(None, f"{failed}: connection refused", remote=True)
    full_path = url[len(host.url) + 1 :].removesuffix("/").removesuffix(".git")
    project = host.state.find_project(full_path)
    secret_name = (spec.get("secretRef") or {}).get("name")
    credentials = _credentials(site, secret_name) if isinstance(secret_name, str) else None
    if credentials is None:
        return Source(None, f"{failed}: authentication required", remote=True)
    principal = host.state.git_principal(*credentials)
    if principal is None:
        return Source(None, f"{failed}: authentication required", remote=True)
    if project is None or not may_read(principal, project):
        return Source(None, f"{failed}: repository not found", remote=True)
    return Source(host.state.repo_path(project), remote=True)


def _credentials(site: "Site", name: str) -> tuple[str, str] | None:
    secret = site.store.load("secrets", "flux-system", name)
    if secret is None:
        return None
    data = secret.get("data") or {}
    try:
        username = base64.b64decode(data.get("username", "")).decode()
        password = base64.b64decode(data.get("password", "")).decode()
    except (binascii.Error, UnicodeDecodeError, TypeError):
        return None
    string_data = secret.get("stringData") or {}
    username = username or str(string_data.get("username", ""))
    password = password or str(string_data.get("password", ""))
    return (username, password) if username and password else None


def source_key(site: "Site", spec: dict[str, Any]) -> tuple[Any, ...]:
    """What the resolution depends on in the site's store: the Secret's resource version."""
    name = (spec.get("secretRef") or {}).get("name")
    stored = site.store.get("secrets", "flux-system", name) if isinstance(name, str) else None
    return (name, stored.rv if stored is not None else None)
