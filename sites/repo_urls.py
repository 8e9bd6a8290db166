"""Which git repositories edgefleet talks to, and which server its git token may go to.

A site's `repo_url` is client input that a worker later hands to git together with our credentials.
Unchecked, `http://attacker/x.git` would receive the token, `ext::sh -c ...` would run a command on
the worker, and `file:///etc/...` would make git read the control plane's own disk. `GitPolicy.check`
is the one reading of such a URL: on write (`sites.validators.validate_repo_url`, a 400 naming
`repo_url`) and again in `SiteRepo` before any git call, so a row planted past the API is refused at use.

What passes (everything else is refused with a sentence saying why):
- `https://host[:port]/path`, `ssh://[user@]host[:port]/path` and scp-like `user@host:path`, to a host
  listed in FLEET_GIT_HOSTS. An entry without a port allows the scheme's default port only; the user
  name is for ssh (`git@`), never a password, and HTTPS takes no user-info at all (credentials come
  from settings). scp-like URLs are kept in that form (host lower-cased): rewriting them as `ssh://`
  would change the path on a plain ssh server (home-relative vs absolute).
- `http://` only to a listed loopback host (tests, a local proxy), and never in production.
- Local repositories (`file:///abs/path` or `/abs/path`) only outside production, and only under
  FLEET_GIT_LOCAL_ROOTS (default FLEET_DATA_DIR) or FLEET_REPO_ROOT once symlinks and `..` are
  resolved, and never inside the working-clone cache.

Which server the token goes to is not decided by any URL: `token_scope` sends it only to the one
configured FLEET_GIT_TOKEN_HOST. The module is pure (no git, no database); only
`GitPolicy.from_settings` reads settings.
"""

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22}

# git's own remote-helper syntax, `<transport>::<address>` (transport.c): `ext::` runs a command, `fd::`
# talks over inherited file descriptors. Nothing we need.
_HELPER_RE = re.compile(r"^[A-Za-z0-9]*::")
# git's is_url(): a scheme, then `://`.
_SCHEME_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9+.-]*)://")
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")
# What a repository path on a git server needs; anything else (`?`, `#`, `\`, spaces, quotes) is refused
# because git, curl and ssh might not agree on what it means.
_NET_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/%+-]+$")
_SCP_RE = re.compile(r"^(?:(?P<user>[^@:/]*)@)?(?P<host>[^@:/]*):(?P<path>.*)$")
_SCP_PATH_RE = re.compile(r"^[A-Za-z0-9._~/%+][A-Za-z0-9._~/%+-]*$")
_LOOPBACK_NAMES = {"localhost"}


class RepoUrlRefused(ValueError):
    """The URL must not be given to git. The message says why; it never repeats a password."""


@dataclass(frozen=True)
class RepoLocation:
    """A checked repository URL: what git is given (`url`), through which git transport, and where.

    `transport` is git's protocol name (`https`, `http`, `ssh` or `file`); `host` (lower-case, IPv6
    without brackets) and the effective `port` are set for network transports, `path` (resolved) for
    local repositories.
    """

    url: str
    transport: str
    host: str = ""
    port: int | None = None
    path: Path | None = None


@dataclass(frozen=True)
class HostEntry:
    """One allowed server: a host, and a port when the entry names one (else the scheme's default)."""

    host: str
    port: int | None = None

    @classmethod
    def parse(cls, entry: str) -> "HostEntry":
        """`host`, `host:port`, `[v6]` or `[v6]:port`, as FLEET_GIT_HOSTS lists them. ValueError if not."""
        text = entry.strip().lower()
        host, port = _split_host_port(text)
        if host is None:
            raise ValueError(f"{entry!r} is not a git host (host or host:port, e.g. gitlab.example.com)")
        return cls(host=host, port=port)

    def matches(self, scheme: str, host: str, port: int) -> bool:
        """Whether a URL of `scheme` to `host:port` (the effective port) names this server."""
        return host == self.host and port == (self.port or DEFAULT_PORTS[scheme])

    def __str__(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"{shown}:{self.port}" if self.port else shown


@dataclass(frozen=True)
class GitPolicy:
    """The servers and local directories git may be pointed at. Build with `GitPolicy.from_settings()`.

    `hosts` are the allowed servers; `local_roots` the directories local repositories may live in
    (resolved; empty means none), `excluded` directories inside them that are never a site's
    repository (our own working clones); `allow_plain_http` lets `http://` reach a listed loopback host.
    """

    hosts: tuple[HostEntry, ...] = ()
    local_roots: tuple[Path, ...] = ()
    excluded: tuple[Path, ...] = ()
    allow_plain_http: bool = False

    @classmethod
    def from_settings(cls) -> "GitPolicy":
        """FLEET_GIT_HOSTS; outside production also FLEET_GIT_LOCAL_ROOTS and FLEET_REPO_ROOT, and plain
        HTTP to loopback. Production has no local roots and no plain HTTP, whatever is configured."""
        from django.conf import settings

        production = bool(settings.PRODUCTION)
        roots = [] if production else [*settings.FLEET_GIT_LOCAL_ROOTS, settings.REPO_ROOT]
        return cls(
            hosts=tuple(HostEntry.parse(entry) for entry in settings.FLEET_GIT_HOSTS),
            local_roots=tuple(_resolved(root) for root in roots),
            excluded=(_resolved(settings.REPO_CACHE_DIR),),
            allow_plain_http=not production,
        )

    @classmethod
    def local(cls, *roots: Path | str) -> "GitPolicy":
        """Local repositories under `roots` only (benchmarks and tools that run without settings)."""
        return cls(local_roots=tuple(_resolved(root) for root in roots))

    def check(self, url: object) -> RepoLocation:
        """The location `url` names, or RepoUrlRefused saying why git must not be pointed there."""
        if not isinstance(url, str) or not url:
            raise RepoUrlRefused("a repository URL is a non-empty string")
        shown = _shown(url)
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in url) or url != url.strip():
            raise RepoUrlRefused(f"{shown} contains control characters or surrounding spaces")
        if len(url) > 500:
            raise RepoUrlRefused(f"{shown} is longer than 500 characters")
        if url.startswith("-"):
            raise RepoUrlRefused(f"{shown} starts with '-', which git would read as an option")
        if _HELPER_RE.match(url):
            helper = url.split("::", 1)[0]
            raise RepoUrlRefused(
                f"{shown} asks git for the remote helper {helper!r}::, which is not allowed (it can run "
                "commands); give an https:// or ssh:// URL"
            )
        scheme_match = _SCHEME_RE.match(url)
        if scheme_match:
            scheme = scheme_match.group(1)
            if scheme == "file":
                return self._local(unquote(url[len("file://") :]), url, shown, file_url=True)
            if scheme not in DEFAULT_PORTS:
                raise RepoUrlRefused(f"{shown}: the scheme {scheme!r} is not allowed; use https:// or ssh://")
            return self._network(scheme, url[len(scheme) + 3 :], shown)
        colon, slash = url.find(":"), url.find("/")
        if colon != -1 and (slash == -1 or colon < slash):
            return self._scp(url, shown)  # git's rule: a colon before the first slash means ssh
        return self._local(url, url, shown, file_url=False)

    # --- the three shapes -------------------------------------------------------------------------

    def _network(self, scheme: str, rest: str, shown: str) -> RepoLocation:
        authority, slash, tail = rest.partition("/")
        path = "/" + tail if slash else ""
        user = ""
        if "@" in authority:
            userinfo, _, authority = authority.rpartition("@")
            if ":" in userinfo:
                raise RepoUrlRefused(f"{shown} holds a password; credentials come from settings, never the URL")
            if scheme != "ssh":
                raise RepoUrlRefused(
                    f"{shown} holds a user name; HTTPS credentials come from settings (FLEET_GIT_TOKEN)"
                )
            if not _USER_RE.match(userinfo):
                raise RepoUrlRefused(f"{shown}: {userinfo!r} is not a valid ssh user name")
            user = userinfo
        host, port = _split_host_port(authority.lower())
        if host is None:
            raise RepoUrlRefused(f"{shown} names no valid host")
        if not _NET_PATH_RE.match(path) or path.startswith("/-"):
            raise RepoUrlRefused(
                f"{shown} needs a repository path of letters, digits and . _ ~ / % + - (e.g. /group/site.git)"
            )
        effective = port or DEFAULT_PORTS[scheme]
        if scheme == "http":
            if not self.allow_plain_http:
                raise RepoUrlRefused(f"{shown}: plain http:// is not allowed; use https:// or ssh://")
            if not _is_loopback(host):
                raise RepoUrlRefused(f"{shown}: plain http:// only reaches this machine (loopback); use https://")
        self._require_listed(scheme, host, effective, shown)
        netloc = f"[{host}]" if ":" in host else host
        canonical = f"{scheme}://{user + '@' if user else ''}{netloc}{f':{port}' if port else ''}{path}"
        return RepoLocation(url=canonical, transport=scheme, host=host, port=effective)

    def _scp(self, url: str, shown: str) -> RepoLocation:
        match = _SCP_RE.match(url)
        if match is None:
            raise RepoUrlRefused(f"{shown} is neither a URL nor a path; use https:// or ssh://")
        user, host, path = match.group("user"), match.group("host").lower(), match.group("path")
        if user is not None and not _USER_RE.match(user):
            raise RepoUrlRefused(f"{shown}: {user!r} is not a valid ssh user name")
        if not (_HOSTNAME_RE.match(host) or _is_ipv4(host)):
            raise RepoUrlRefused(f"{shown} names no valid host (for a port or IPv6, write ssh://host:port/path)")
        if not _SCP_PATH_RE.match(path):
            raise RepoUrlRefused(f"{shown} needs a repository path of letters, digits and . _ ~ / % + -")
        self._require_listed("ssh", host, DEFAULT_PORTS["ssh"], shown)
        canonical = f"{user + '@' if user is not None else ''}{host}:{path}"
        return RepoLocation(url=canonical, transport="ssh", host=host, port=DEFAULT_PORTS["ssh"])

    def _local(self, raw_path: str, url: str, shown: str, *, file_url: bool) -> RepoLocation:
        if not self.local_roots:
            raise RepoUrlRefused(
                f"{shown} is a local repository, which only the embedded set-up allows; use https:// or ssh://"
            )
        if "\0" in raw_path:
            raise RepoUrlRefused(f"{shown} contains a NUL character")
        if not raw_path.startswith("/"):
            hint = "file:///absolute/path" if file_url else "an absolute path"
            raise RepoUrlRefused(f"{shown} is not an absolute local path; give {hint}")
        resolved = _resolved(raw_path)
        if not any(resolved.is_relative_to(root) for root in self.local_roots):
            roots = ", ".join(str(root) for root in self.local_roots)
            raise RepoUrlRefused(
                f"{shown} is outside the directories local repositories may live in ({roots}; "
                "see FLEET_GIT_LOCAL_ROOTS)"
            )
        if any(resolved.is_relative_to(excluded) for excluded in self.excluded):
            raise RepoUrlRefused(f"{shown} is inside edgefleet's own working clones")
        return RepoLocation(url=url, transport="file", path=resolved)

    def _require_listed(self, scheme: str, host: str, port: int, shown: str) -> None:
        if not any(entry.matches(scheme, host, port) for entry in self.hosts):
            netloc = f"[{host}]" if ":" in host else host
            server = netloc if port == DEFAULT_PORTS[scheme] else f"{netloc}:{port}"
            listed = ", ".join(str(entry) for entry in self.hosts) or "none"
            raise RepoUrlRefused(f"{shown}: the git host {server} is not in FLEET_GIT_HOSTS (allowed: {listed})")


def token_scope(location: RepoLocation, token_host: str) -> str | None:
    """The `scheme://host[:port]/` git may send the token to for `location`, or None when the token must
    not be sent: only to the configured token host, over HTTPS (plain HTTP only on loopback, which the
    policy allows only outside production). The scope is built from the configured host, not the URL."""
    if not token_host or location.transport not in ("https", "http") or location.port is None:
        return None
    try:
        entry = HostEntry.parse(token_host)
    except ValueError:
        return None
    if not entry.matches(location.transport, location.host, location.port):
        return None
    if location.transport == "http" and not _is_loopback(entry.host):
        return None
    return f"{location.transport}://{entry}/"


# --- helpers ----------------------------------------------------------------------------------------


def _split_host_port(text: str) -> tuple[str | None, int | None]:
    """(`host`, port or None) of `host[:port]` / `[v6][:port]`, host lower-case; (None, None) if invalid."""
    if text.startswith("["):
        inside, bracket, after = text[1:].partition("]")
        if not bracket or not _is_ipv6(inside):
            return None, None
        host, port_text = inside, after
        if port_text and not port_text.startswith(":"):
            return None, None
        port_text = port_text[1:] if port_text else ""
        has_port = bool(after)
    else:
        host, has_colon, port_text = text.partition(":")
        has_port = bool(has_colon)
        if not (_HOSTNAME_RE.match(host) or _is_ipv4(host)):
            return None, None
    if not has_port:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None, None
    return host, int(port_text)


def _is_ipv4(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv4Address)
    except ValueError:
        return False


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        return False


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _resolved(path: Path | str) -> Path:
    # realpath, not Path.resolve(strict=True): the repository may not exist yet (ensure_initialized).
    return Path(os.path.realpath(path))


_USERINFO_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9+.-]*://)[^/]*@")


def _shown(url: str) -> str:
    """The URL for a message: any user-info masked, shortened, quoted."""
    masked = _USERINFO_RE.sub(r"\1***@", url)
    return repr(masked if len(masked) <= 120 else masked[:119] + "…")
