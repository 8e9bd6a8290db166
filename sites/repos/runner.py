"""The git runner: every git process the adapter starts, with its environment, timeout and error reading.

`GitRunner` holds one site's hermetic environment (no system or global configuration, no prompts, only
the checked URL's transport, the token scoped to FLEET_GIT_TOKEN_HOST, no redirects, no submodules),
runs git with a kill timeout, and turns a failed process into `RepoUnavailable`, `RepoError` or
`CorruptClone` with a message scrubbed of credentials. The reasons are in docs/ARCHITECTURE.md
("Git repositories and the token").
"""

import base64
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import git
from django.conf import settings

from sites.repo_urls import RepoLocation, token_scope
from sites.repos.errors import CorruptClone, RepoError, RepoUnavailable


@dataclass(frozen=True)
class GitCredentials:
    """How to authenticate to git servers. Local bare repositories need none of it.

    The token never appears in repr, logs, argv or error messages.
    """

    ssh_key_file: str = ""
    known_hosts_file: str = ""
    token: str = field(default="", repr=False)
    username: str = "x-access-token"
    #: The one server (`host` or `host:port`) the token is sent to; without it the token is never sent.
    token_host: str = ""
    #: A CA bundle git trusts for HTTPS servers (a private CA, the simulator's): `http.sslCAInfo`.
    ca_file: str = ""

    @classmethod
    def from_settings(cls) -> "GitCredentials":
        from sites.crypto import setting_secret

        return cls(
            ssh_key_file=settings.FLEET_GIT_SSH_KEY_FILE,
            known_hosts_file=settings.FLEET_GIT_KNOWN_HOSTS_FILE,
            token=setting_secret(settings.FLEET_GIT_TOKEN, "FLEET_GIT_TOKEN"),
            username=settings.FLEET_GIT_USERNAME,
            token_host=settings.FLEET_GIT_TOKEN_HOST,
            ca_file=settings.FLEET_GIT_CA_FILE,
        )


@dataclass
class GitOutput:
    """What a finished git process left: its exit status, its raw stdout and its decoded stderr."""

    status: int
    stdout: bytes
    stderr: str


# A remote that answered "no": retrying will not change its mind. A redirect is one too: we never follow
# them (the token must not travel), so the URL has to name the repository's real address.
_PERMANENT_RE = re.compile(
    r"does not appear to be a git repository|repository .*not found|not found|could not be found"
    r"|returned error: (40[0134]|30[12378])|authentication failed|permission denied|could not read (username|password)"
    r"|terminal prompts disabled|host key verification failed|invalid username or password|access denied"
    r"|unable to find remote helper|not supported|not allowed|invalid credentials"
    r"|certificate verification failed|ssl certificate problem|certificate verify failed",
    re.IGNORECASE,
)
# Our clone is damaged: re-create it and try again.
_CORRUPT_RE = re.compile(
    r"not a git repository|index file|bad index|corrupt|bad object|unable to read|invalid object"
    r"|does not point to a valid object|broken link|bad signature|unknown index entry format|inflate"
    r"|missing blob|missing tree|bad tree|bad HEAD|HEAD is not a symbolic ref|invalid reference",
    re.IGNORECASE,
)
# Local trouble that passes (disk full, resource limits, a git process we do not know of).
_LOCAL_TRANSIENT_RE = re.compile(
    r"no space left|too many open files|cannot allocate memory|resource temporarily unavailable"
    r"|unable to create .*\.lock",
    re.IGNORECASE,
)
_CREDENTIALS_RE = re.compile(r"could not read (username|password)|authentication failed", re.IGNORECASE)
_URL_USERINFO_RE = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


def summary(text: str, limit: int = 400) -> str:
    """git's output on one line for a message: hints dropped, at most `limit` characters."""
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("hint:")]
    joined = "; ".join(lines) or "no output"
    return joined if len(joined) <= limit else joined[: limit - 1] + "…"


def scrub_credentials(text: str, credentials: GitCredentials | None) -> str:
    """`text` without credentials: URL user-info, the token, and its Basic-auth encoding."""
    text = _URL_USERINFO_RE.sub(r"\1***@", text)
    if credentials and credentials.token:
        basic = base64.b64encode(f"{credentials.username}:{credentials.token}".encode()).decode()
        for secret in (credentials.token, basic):
            text = text.replace(secret, "***")
    return text


class GitRunner:
    """Runs git for one site: outside any clone (`run_bare`) or pinned to its working clone (`run_in_clone`).

    Build it only after the URL has passed the git policy: `location` is what `GitPolicy.check` returned,
    and the environment lets git use that location's transport and nothing else. `env` is the base
    environment of every process (read-only by convention; tests inspect it).
    """

    def __init__(
        self,
        code: str,
        location: RepoLocation,
        credentials: GitCredentials,
        *,
        timeout: float,
        cache_dir: Path,
        clone_path: Path,
    ):
        self.code = code
        self.location = location
        self.credentials = credentials
        self.timeout = timeout
        self.cache_dir = cache_dir
        self.clone_path = clone_path
        self.env = self._build_env()

    def _build_env(self) -> dict[str, str]:
        env = {
            # Hermetic: only what we set here applies (docs/ARCHITECTURE.md, "Git repositories and the token").
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "",
            "SSH_ASKPASS": "",
            "GIT_LITERAL_PATHSPECS": "1",
            # curl gives up on a transfer slower than 1 kB/s for this long (before the kill timeout).
            "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
            "GIT_HTTP_LOW_SPEED_TIME": str(max(5, int(min(self.timeout, 30)))),
        }
        ssh = [
            "ssh",
            "-o BatchMode=yes",
            f"-o ConnectTimeout={max(5, int(min(self.timeout, 15)))}",
            "-o ServerAliveInterval=15",
            "-o ServerAliveCountMax=2",
            "-o StrictHostKeyChecking=accept-new",
        ]
        if self.credentials.known_hosts_file:
            ssh.append("-o UserKnownHostsFile=" + shlex.quote(self.credentials.known_hosts_file))
        if self.credentials.ssh_key_file:
            ssh += ["-i", shlex.quote(self.credentials.ssh_key_file), "-o IdentitiesOnly=yes"]
        env["GIT_SSH_COMMAND"] = " ".join(ssh)

        # Only the transport of our (checked) URL: whatever else reaches git (a remote helper such as
        # `ext::`, `fd::`, git://, a local path, a submodule URL) is refused by git itself.
        transport = self.location.transport
        env["GIT_ALLOW_PROTOCOL"] = transport  # git's older switch; same meaning as the config below
        env["GIT_PROTOCOL_FROM_USER"] = "0"
        config: list[tuple[str, str]] = [
            ("protocol.allow", "never"),
            (f"protocol.{transport}.allow", "always"),
            # A redirect could lead the token's request to another server; the URL must be the real one.
            ("http.followRedirects", "false"),
            # The site repository's .gitmodules must never make a worker fetch from elsewhere.
            ("fetch.recurseSubmodules", "false"),
            ("submodule.recurse", "false"),
            # Never leave a background `git gc` behind a worker; we run gc ourselves now and then.
            ("gc.autoDetach", "false"),
            ("maintenance.auto", "false"),
        ]
        if self.credentials.ca_file and transport == "https":
            # Trust this CA for the server's certificate (verification itself is never switched off). The
            # variable too: git prefers an inherited GIT_SSL_CAINFO to its configuration.
            config.append(("http.sslCAInfo", self.credentials.ca_file))
            env["GIT_SSL_CAINFO"] = self.credentials.ca_file
        header_url = token_scope(self.location, self.credentials.token_host)
        if header_url and self.credentials.token:
            basic = base64.b64encode(f"{self.credentials.username}:{self.credentials.token}".encode()).decode()
            config.append((f"http.{header_url}.extraHeader", f"Authorization: Basic {basic}"))
        env["GIT_CONFIG_COUNT"] = str(len(config))
        for index, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        return env

    def scrub(self, text: str) -> str:
        """`text` without this site's credentials (see `scrub_credentials`)."""
        return scrub_credentials(text, self.credentials)

    def _execute(self, runner: git.Git, args: tuple[str, ...], env: Mapping[str, str]) -> GitOutput:
        kwargs: dict[str, Any] = {
            "with_extended_output": True,
            "with_exceptions": False,
            "kill_after_timeout": self.timeout,
            "stdout_as_string": False,
            "strip_newline_in_stdout": False,
            "env": dict(env),
        }
        try:
            status, stdout, stderr = runner.execute(["git", *args], **kwargs)
        except git.GitCommandNotFound:
            raise RepoError(f"{self.code}: the git executable was not found") from None
        except OSError as exc:
            raise RepoUnavailable(f"{self.code}: cannot run git: {exc.strerror}") from None
        err = stderr.decode(errors="replace") if isinstance(stderr, bytes) else str(stderr or "")
        return GitOutput(status=int(status or 0), stdout=stdout or b"", stderr=err)

    def failure(self, args: tuple[str, ...], out: GitOutput, *, network: bool) -> Exception:
        """The error a failed `git <args>` stands for: transient, permanent, or a damaged clone."""
        verb = args[0]
        if out.status < 0 or out.stderr.startswith("Timeout:"):
            # Killed by the watchdog (or a signal): the remote, or the machine, was too slow.
            return RepoUnavailable(f"{self.code}: git {verb} did not finish within {self.timeout:g}s")
        text = self.scrub(out.stderr or out.stdout.decode(errors="replace"))
        message = f"{self.code}: git {verb} failed: {summary(text)}"
        if _CREDENTIALS_RE.search(text):
            # git answers a 401 to our header by asking for a user name, which reads like a prompt problem.
            message = (
                f"{self.code}: git {verb} failed: the git server refused edgefleet's credentials (401; check "
                f"FLEET_GIT_TOKEN, its scopes and FLEET_GIT_TOKEN_HOST): {summary(text)}"
            )
        if network:
            if str(self.clone_path) in text and _CORRUPT_RE.search(text):
                # A network command tripping over our own damaged clone (e.g. fetch reading a bad index).
                return CorruptClone(message)
            return RepoError(message) if _PERMANENT_RE.search(text) else RepoUnavailable(message)
        if _LOCAL_TRANSIENT_RE.search(text):
            return RepoUnavailable(message)
        if _CORRUPT_RE.search(text):
            return CorruptClone(message)
        return RepoError(message)

    def run_bare(self, *args: str, cwd: Path | None = None) -> GitOutput:
        """A git command outside any clone (ls-remote, init), as a network operation."""
        directory = cwd or self.cache_dir
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RepoUnavailable(f"{self.code}: cannot create {directory}: {exc.strerror}") from None
        # The cache may live inside another repository (var/ in a checkout): never discover it.
        env = {**self.env, "GIT_CEILING_DIRECTORIES": str(directory)}
        out = self._execute(git.Git(directory), args, env)
        if out.status != 0:
            raise self.failure(args, out, network=True)
        return out

    def run_in_clone(
        self,
        runner: git.Git,
        *args: str,
        network: bool = False,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> GitOutput:
        """A git command on the working clone (through `runner`, the clone's `git.Git`)."""
        # GIT_DIR pins every command to our clone: with a damaged .git, git must fail, not walk up to a
        # parent directory's repository and reset *that*.
        full_env = {**self.env, "GIT_DIR": str(self.clone_path / ".git"), "GIT_WORK_TREE": str(self.clone_path)}
        if env:
            full_env.update(env)
        out = self._execute(runner, args, full_env)
        if check and out.status != 0:
            raise self.failure(args, out, network=network)
        return out
