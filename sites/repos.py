"""The git adapter for one site: `SiteRepo`, over GitPython.

Nothing else in edgefleet imports `git`. Each site's desired state lives in its own repository; this
module keeps one working clone per site under `settings.REPO_CACHE_DIR/<code>`, and every operation
is one locked session on that clone:

    flock(<code>.lock) -> check the clone (re-create it when damaged) -> fetch `main` -> reset --hard
    -> change the tree -> commit only if the tree changed -> push `main` -> unlock

A rejected push (someone else pushed since our fetch) repeats the whole session from the fetch, with
the same change re-applied on top of their commit: we never force-push and never lose anyone's work.
Operations are idempotent, as workflow steps must be: writing the same files twice gives one commit.

Errors reach callers as two types, which workflow steps translate into outcomes:
`RepoUnavailable` (transient: network, timeout, lock busy, push still rejected after the retries ->
Retry) and `RepoError` (permanent: no such repository, credentials refused, bad path -> Fail). Their
messages name the site and never contain a credential.

Why it is written this way:
- Every git process gets a timeout (GitPython's `kill_after_timeout`, plus curl's low-speed limit and
  ssh's connect timeout), so no call can hang a worker.
- Git runs hermetically: no system or global git configuration (a developer's `commit.gpgsign` or
  hook path must not change what a worker does), no prompts, no credential helpers. Credentials come
  from settings only, through the environment: an HTTPS token as an `http.<url>.extraHeader` set with
  GIT_CONFIG_COUNT/KEY/VALUE (never in the URL or argv, where `ps` and error messages would show it),
  an SSH deploy key through GIT_SSH_COMMAND. A private CA for the HTTPS server (FLEET_GIT_CA_FILE)
  becomes `http.sslCAInfo` the same way; certificate verification is never turned off.
- The URL is checked before any git call (`sites.repo_urls.GitPolicy`: listed hosts, local roots, no
  remote helpers; a refusal is `UnsafeUrl`, permanent), and git may use only that URL's transport:
  `protocol.allow=never` plus the one transport, GIT_ALLOW_PROTOCOL for the same, and
  GIT_PROTOCOL_FROM_USER=0. So `ext::`, `fd::`, `git://` or a local path are refused by git itself even
  if one reached it some other way. The token is scoped to FLEET_GIT_TOKEN_HOST, not to the URL, and
  redirects are not followed, so it reaches no other server. Submodules are never fetched.
- No Repo object outlives an operation: GitPython starts persistent `git cat-file` processes for a
  Repo, so a long-running worker would collect them. Sessions open and close their Repo; reading
  objects goes through one-shot git commands.
- Requires git >= 2.32 (GIT_CONFIG_GLOBAL, `init -b`, `restore`).
"""

import base64
import fcntl
import logging
import os
import random
import re
import shlex
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

import git
from django.conf import settings
from git.refs.symbolic import SymbolicReference

from sites.repo_urls import GitPolicy, RepoLocation, RepoUrlRefused, token_scope

if TYPE_CHECKING:
    from sites.models import Site

logger = logging.getLogger(__name__)

T = TypeVar("T")

BRANCH = "main"
LOCAL_MAIN = "refs/heads/main"
REMOTE_MAIN = "refs/remotes/origin/main"


# --- errors ---------------------------------------------------------------------------------------


class RepoFailure(Exception):
    """Base of the adapter's errors. The message is safe to store and show: it holds no credential."""


class RepoUnavailable(RepoFailure):
    """Transient: the remote did not answer, timed out, hung up, the clone is busy, or the push kept being
    overtaken by other writers. Retry later."""


class RepoError(RepoFailure):
    """Permanent: the repository does not exist, the credentials were refused, or the request is invalid.
    Retrying will not help."""


class UnsafePath(RepoError, ValueError):
    """A path that is absolute, climbs out with `..`, or points into `.git`."""


class UnsafeUrl(RepoError, ValueError):
    """A repository URL the git policy refuses (sites.repo_urls): an unlisted host, a remote helper, a
    local path outside the allowed roots, credentials in the URL. Permanent: fix the site's repo_url."""


class _CorruptClone(Exception):
    """Our working clone is damaged; the session re-creates it and starts over (internal)."""


# --- values ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Author:
    """Who a commit is attributed to (the actor who asked for the change)."""

    name: str
    email: str

    def __post_init__(self) -> None:
        for value in (self.name, self.email):
            # git would silently drop or mangle these; better to refuse than to misattribute.
            if not value.strip() or any(ch in value for ch in "<>\n\r\0"):
                raise ValueError(f"invalid git author {self.name!r} <{self.email!r}>")

    @classmethod
    def of(cls, actor: object) -> "Author":
        """The author for an actor: a user (full name or username, and email) or a name such as "beat"."""
        if isinstance(actor, Author):
            return actor
        if isinstance(actor, str):
            name = actor.strip() or "edgefleet"
            email = ""
        else:
            get_username = getattr(actor, "get_username", None)
            get_full_name = getattr(actor, "get_full_name", None)
            username = str(get_username()) if callable(get_username) else str(actor)
            full_name = str(get_full_name()).strip() if callable(get_full_name) else ""
            name = full_name or username or "edgefleet"
            email = str(getattr(actor, "email", "") or "")
        if not email:
            # `.invalid` is reserved (RFC 2606): clearly not a mailbox, and git needs an address.
            email = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-").lower() + "@edgefleet.invalid"
        return cls(name=name, email=email)


#: The committer of every commit we make; the author is the actor.
COMMITTER = Author(name="edgefleet", email="edgefleet@edgefleet.invalid")


@dataclass(frozen=True)
class CommitResult:
    """The outcome of a write: the head of `main` afterwards and whether this call moved it.

    `revision` is None only for a repository that is still empty; `previous` is the head the change
    was made on top of (None for the first commit); `attempts` counts pushes raced by other writers + 1.
    """

    revision: str | None
    changed: bool
    previous: str | None
    attempts: int = 1


@dataclass(frozen=True)
class MarkedCommit:
    """A commit found by its trailer, and its first parent (None for a repository's first commit)."""

    revision: str
    parent: str | None


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
class _Output:
    status: int
    stdout: bytes
    stderr: str


# --- paths ----------------------------------------------------------------------------------------

_CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# A commit message trailer we look up: `Token: value`, nothing a regular expression would read as syntax
# beyond the dots, and no newline.
_TRAILER_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,60}: [A-Za-z0-9._:/-]{1,120}")


def clean_path(path: str) -> str:
    """A repository path in canonical form (`a/b.yaml`), or UnsafePath.

    Refused: empty, absolute, `..` anywhere, a `.git` component (any case: git itself refuses them on
    case-insensitive checkouts), backslashes and control characters (ambiguous or invisible in a log).
    """
    if not isinstance(path, str) or not path:
        raise UnsafePath(f"invalid repository path {path!r}: empty")
    if path.startswith("/"):
        raise UnsafePath(f"invalid repository path {path!r}: absolute")
    if "\\" in path or any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        raise UnsafePath(f"invalid repository path {path!r}: backslash or control character")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if not parts:
        raise UnsafePath(f"invalid repository path {path!r}: names the repository root")
    if ".." in parts:
        raise UnsafePath(f"invalid repository path {path!r}: contains '..'")
    if any(part.lower() == ".git" for part in parts):
        raise UnsafePath(f"invalid repository path {path!r}: inside .git")
    return "/".join(parts)


def _ancestors(path: str) -> list[str]:
    """`a/b/c` -> [`a`, `a/b`]."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


# --- error text -----------------------------------------------------------------------------------

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
# A push overtaken by another writer: fetch, re-apply, push again.
_PUSH_RACE_RE = re.compile(
    r"\[rejected\]|non-fast-forward|fetch first|failed to update ref|cannot lock ref|failed to lock"
    r"|incorrect old value|stale info",
    re.IGNORECASE,
)
_CREDENTIALS_RE = re.compile(r"could not read (username|password)|authentication failed", re.IGNORECASE)
_URL_USERINFO_RE = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


def _summary(text: str, limit: int = 400) -> str:
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("hint:")]
    joined = "; ".join(lines) or "no output"
    return joined if len(joined) <= limit else joined[: limit - 1] + "…"


# --- the adapter ----------------------------------------------------------------------------------


class SiteRepo:
    """One site's git repository, through a locked working clone. Build with `SiteRepo.for_site(site)`.

    Instances hold configuration only and are safe to share between threads; every public method is
    one session under the clone's file lock, so concurrent callers in any process are serialized.
    Construction checks the URL against `policy` (default: from settings) and raises UnsafeUrl before
    any git process could see it.

    In a workflow step:

        repo, author = SiteRepo.for_site(site), Author.of(actor)
        try:
            result = repo.write(files, owned_prefix=f"apps/{app}", message=f"Roll out {release}", author=author)
        except RepoUnavailable as exc:
            return Retry(str(exc))
        except RepoError as exc:
            return Fail(str(exc))
        return Done({"revision": result.revision, "previous": result.previous, "changed": result.changed})
    """

    #: How many times a push overtaken by another writer is re-done before RepoUnavailable.
    push_attempts = 5

    def __init__(
        self,
        code: str,
        url: str,
        *,
        cache_dir: Path | str,
        credentials: GitCredentials | None = None,
        timeout: float = 30.0,
        lock_timeout: float = 30.0,
        policy: GitPolicy | None = None,
    ):
        if not _CODE_RE.match(code or ""):
            raise RepoError(f"invalid site code {code!r} for a repository clone")
        try:
            self.location: RepoLocation = (policy or GitPolicy.from_settings()).check(url)
        except RepoUrlRefused as exc:
            raise UnsafeUrl(f"{code}: repository URL refused: {exc}") from None
        self.code = code
        self.url = self.location.url
        self.cache_dir = Path(cache_dir)
        self.credentials = credentials or GitCredentials()
        self.timeout = float(timeout)
        self.lock_timeout = float(lock_timeout)
        if os.environ.get("GIT_SSL_NO_VERIFY") is not None:
            # git reads it from the environment GitPython hands on, whatever we configure: refuse to run.
            raise RepoError(
                f"{code}: GIT_SSL_NO_VERIFY is set in this process's environment, which would switch off "
                "certificate verification; unset it (a private CA goes in FLEET_GIT_CA_FILE)"
            )
        self.path = self.cache_dir / code
        self._lock_path = self.cache_dir / f"{code}.lock"
        self._base_env = self._build_env()

    @classmethod
    def for_site(cls, site: "Site") -> "SiteRepo":
        """The adapter for a site: its `repo_url`, or the embedded default `REPO_ROOT/<code>.git`.

        UnsafeUrl when the policy refuses the URL (a row written before the check, or a host since
        removed from FLEET_GIT_HOSTS), and in production for a site without a repo_url.
        """
        if not site.repo_url and settings.PRODUCTION:
            raise UnsafeUrl(
                f"{site.code}: the site has no repository URL (repo_url); local repositories under "
                "FLEET_REPO_ROOT are only for the embedded set-up"
            )
        url = site.repo_url or str(Path(settings.REPO_ROOT) / f"{site.code}.git")
        return cls.from_settings(site.code, url)

    @classmethod
    def from_settings(cls, code: str, url: str) -> "SiteRepo":
        """The adapter for a site code and URL, with cache directory, credentials and timeouts from settings."""
        return cls(
            code,
            url,
            cache_dir=settings.REPO_CACHE_DIR,
            credentials=GitCredentials.from_settings(),
            timeout=settings.FLEET_GIT_TIMEOUT,
            lock_timeout=settings.FLEET_GIT_LOCK_TIMEOUT,
        )

    def __repr__(self) -> str:
        return f"<SiteRepo {self.code} {self._scrub_text(self.url, None)}>"

    # --- public operations ------------------------------------------------------------------------

    def head(self) -> str | None:
        """The remote's `main` head (`git ls-remote`, no clone, no lock), or None for an empty repository."""
        out = self._run_bare("ls-remote", "--refs", self.url, LOCAL_MAIN)
        for line in out.stdout.decode(errors="replace").splitlines():
            sha, _, ref = line.partition("\t")
            if ref == LOCAL_MAIN:
                return sha
        return None

    def exists(self) -> bool:
        """Whether the remote repository exists (empty counts). RepoError if it refuses us, RepoUnavailable
        if it cannot be reached."""
        try:
            self._run_bare("ls-remote", "--refs", self.url, LOCAL_MAIN)
        except RepoError as exc:
            if re.search(r"does not appear to be a git repository|not found|could not be found|404", str(exc), re.I):
                return False
            raise
        return True

    def ensure_initialized(
        self, *, author: Author, message: str = "Initialize the site repository", create: bool = False
    ) -> CommitResult:
        """Make sure `main` exists: on an empty repository, push an empty first commit; otherwise no-op.

        `create=True` also creates a missing *local* bare repository (the embedded default); a remote
        repository is never created from here.
        """
        if create and self.location.transport == "file" and self.location.path is not None:
            bare = self.location.path
            if not bare.exists():
                bare.parent.mkdir(parents=True, exist_ok=True)
                self._run_bare("init", "-q", "--bare", "-b", BRANCH, str(bare))
                logger.info("%s: created bare repository %s", self.code, bare)

        def unchanged(clone: "_Clone", base: str | None) -> None:
            return None

        return self._commit(unchanged, message=message, author=author, allow_empty_root=True)

    def write(
        self,
        files: Mapping[str, str | bytes],
        *,
        owned_prefix: str | None,
        message: str,
        author: Author,
    ) -> CommitResult:
        """Make `files` ({path: content}) exist with exactly that content, and, when `owned_prefix` is given,
        remove every other file under it (the caller owns that directory). Commit and push only if the
        tree changed; writing the same files again returns the same revision with `changed=False`.

        Files outside `owned_prefix` may be written too; they are never removed. Raises UnsafePath for a
        bad path, before anything is touched.
        """
        blobs = {
            clean_path(path): content.encode() if isinstance(content, str) else bytes(content)
            for path, content in files.items()
        }
        if len(blobs) != len(files):
            raise UnsafePath("two paths in the write name the same file")
        prefix = clean_path(owned_prefix) if owned_prefix is not None else None
        directories = {parent for path in blobs for parent in _ancestors(path)}
        clashes = sorted(directories.intersection(blobs))
        if clashes:
            raise UnsafePath(f"{clashes[0]!r} is written both as a file and as a directory")

        def apply(clone: "_Clone", base: str | None) -> None:
            clone.place(blobs, prefix)

        return self._commit(apply, message=message, author=author)

    def revert_to(
        self,
        revision: str,
        *,
        owned_prefix: str | None = None,
        message: str,
        author: Author,
    ) -> CommitResult:
        """Bring the tree (or only `owned_prefix`) back to what it was at `revision`, as a new commit on top
        of the current head: history is never rewritten. No commit if it is already equal.

        RepoError if `revision` is not a commit of this repository.
        """
        if not revision or revision.startswith("-") or not re.fullmatch(r"[\w./^~@{}-]+", revision):
            raise RepoError(f"{self.code}: invalid revision {revision!r}")
        scope = clean_path(owned_prefix) if owned_prefix is not None else "."

        def apply(clone: "_Clone", base: str | None) -> None:
            if base is None:
                raise RepoError(f"{self.code}: the repository is empty: there is no {revision} to revert to")
            target = clone.resolve(revision)
            if target is None:
                raise RepoError(f"{self.code}: {revision} is not a commit of this repository")
            clone.restore(target, scope)

        return self._commit(apply, message=message, author=author)

    def find_trailer(self, trailer: str) -> MarkedCommit | None:
        """The newest commit on the remote's `main` whose message has the line `trailer` (e.g.
        `Edgefleet-Rollout: 42`), with its first parent; None when there is none.

        This is how a caller that marks its commits finds, after a crash between its push and recording
        the push, what it did and what came before, without having recorded anything first.
        """
        if not _TRAILER_RE.fullmatch(trailer):
            raise RepoError(f"{self.code}: invalid trailer {trailer!r}")

        def find(clone: "_Clone") -> MarkedCommit | None:
            if clone.fetch() is None:
                return None
            # A whole line of the message; `.` is the only character _TRAILER_RE lets through that a
            # basic regular expression would read as syntax.
            pattern = "^" + trailer.replace(".", "\\.") + "$"
            out = clone.run("log", "-1", "--format=%H %P", "--basic-regexp", f"--grep={pattern}", REMOTE_MAIN)
            line = out.stdout.decode().split()
            if not line:
                return None
            return MarkedCommit(revision=line[0], parent=line[1] if len(line) > 1 else None)

        return self._session(find)

    def read(self, path: str, revision: str | None = None) -> bytes | None:
        """The content of `path` at `revision` (default: the remote's current head), or None if there is no
        such file there (or the repository is empty). RepoError if `revision` is unknown."""
        path = clean_path(path)
        if revision is not None and (revision.startswith("-") or not re.fullmatch(r"[\w./^~@{}-]+", revision)):
            raise RepoError(f"{self.code}: invalid revision {revision!r}")

        def read(clone: "_Clone") -> bytes | None:
            if revision is None:
                head = clone.fetch()
                if head is None:
                    return None
                target: str | None = head
            else:
                # A revision we already have needs no network round trip.
                target = clone.resolve(revision)
                if target is None:
                    clone.fetch()
                    target = clone.resolve(revision)
                if target is None:
                    raise RepoError(f"{self.code}: {revision} is not a commit of this repository")
            out = clone.run("cat-file", "blob", f"{target}:{path}", check=False)
            return out.stdout if out.status == 0 else None

        return self._session(read)

    # --- sessions ---------------------------------------------------------------------------------

    def _commit(
        self,
        apply: Callable[["_Clone", str | None], None],
        *,
        message: str,
        author: Author,
        allow_empty_root: bool = False,
    ) -> CommitResult:
        if not message.strip():
            raise RepoError(f"{self.code}: a commit needs a message")

        def attempt_all(clone: "_Clone") -> CommitResult:
            for attempt in range(1, self.push_attempts + 1):
                base = clone.sync()
                apply(clone, base)
                empty_root = allow_empty_root and base is None
                if not empty_root and not clone.staged_changes():
                    return CommitResult(revision=base, changed=False, previous=base, attempts=attempt)
                revision = clone.commit(message, author, allow_empty=empty_root)
                if clone.push():
                    logger.info("%s: pushed %s on top of %s (attempt %d)", self.code, revision[:12], base, attempt)
                    clone.maybe_gc()
                    return CommitResult(revision=revision, changed=True, previous=base, attempts=attempt)
                # Full jitter, so writers that collided do not collide again in step (not for security).
                delay = random.uniform(0, min(2.0, 0.05 * 2**attempt))  # noqa: S311
                logger.warning("%s: push overtaken by another writer; retrying in %.2fs", self.code, delay)
                time.sleep(delay)
            raise RepoUnavailable(
                f"{self.code}: push still rejected after {self.push_attempts} attempts: other writers keep "
                "updating main; try again later"
            )

        return self._session(attempt_all)

    def _session(self, operation: Callable[["_Clone"], T]) -> T:
        """Run `operation` on a healthy clone under the site lock; re-create a damaged clone once."""
        with self._locked():
            for recovering in (False, True):
                try:
                    if recovering or not self._clone_is_healthy():
                        self._create_clone()
                    else:
                        self._clear_stale_locks()
                    with git.Repo(self.path) as repo:
                        return operation(_Clone(self, repo))
                except (_CorruptClone, git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
                    if recovering:
                        raise RepoError(f"{self.code}: working clone still broken after re-cloning: {exc}") from None
                    logger.warning("%s: working clone is damaged (%s); re-cloning", self.code, exc)
                except OSError as exc:
                    # Our own disk (full, read-only, permissions): nothing the remote did; it may pass.
                    raise RepoUnavailable(f"{self.code}: working clone: {exc.strerror or exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive flock on `<code>.lock` beside the clone, for threads and processes alike.

        flock locks belong to an open file description, so two threads of one process that each open the
        file exclude each other too. flock has no timeout: poll with a growing, jittered sleep.
        """
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise RepoUnavailable(f"{self.code}: cannot open the clone lock: {exc.strerror}") from None
        try:
            deadline = time.monotonic() + self.lock_timeout
            pause = 0.005
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise RepoUnavailable(
                            f"{self.code}: the working clone stayed busy for {self.lock_timeout:g}s (another "
                            "operation on this site holds its lock)"
                        ) from None
                    time.sleep(min(remaining, pause * random.uniform(0.5, 1.5)))  # noqa: S311
                    pause = min(pause * 2, 0.1)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _clone_is_healthy(self) -> bool:
        """Cheap checks (no git process) that catch a missing or half-deleted clone, a garbage HEAD and a
        changed URL. Deeper damage shows up as a git error (_CorruptClone) during the session."""
        gitdir = self.path / ".git"
        try:
            head = (gitdir / "HEAD").read_text(errors="replace")
        except OSError:
            return False
        if head.strip() != f"ref: {LOCAL_MAIN}":
            return False
        if not (gitdir / "objects").is_dir() or not (gitdir / "refs").is_dir():
            return False
        try:
            reader = git.GitConfigParser(str(gitdir / "config"), read_only=True)
            url = reader.get_value('remote "origin"', "url")
        except Exception:  # noqa: BLE001 - any failure to read the config means "re-create"
            return False
        return url == self.url

    def _create_clone(self) -> None:
        """A fresh, empty clone: `git init` plus the origin remote; the session's fetch fills it.

        Initialising instead of `git clone` handles an empty remote and a re-clone the same way.
        """
        if self.path.is_symlink() or self.path.is_file():
            self.path.unlink()
        elif self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        self._run_bare("init", "-q", "-b", BRANCH, str(self.path), cwd=self.path)
        self._run_clone(git.Git(self.path), "remote", "add", "-t", BRANCH, "origin", self.url)

    def _clear_stale_locks(self) -> None:
        """Remove lock files a killed git process left behind. Only called while we hold the site lock:
        every git process on this clone is ours and has finished, so any lock file is stale."""
        gitdir = self.path / ".git"
        candidates = [gitdir / name for name in ("index.lock", "HEAD.lock", "config.lock", "packed-refs.lock")]
        for dirpath, _dirnames, filenames in os.walk(gitdir / "refs"):
            candidates.extend(Path(dirpath) / name for name in filenames if name.endswith(".lock"))
        for lock in candidates:
            if lock.exists():
                logger.warning("%s: removing stale %s left by an interrupted git process", self.code, lock.name)
                lock.unlink(missing_ok=True)

    # --- running git ------------------------------------------------------------------------------

    def _build_env(self) -> dict[str, str]:
        env = {
            # Hermetic: only what we set here applies (see the module docstring).
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

    def _scrub(self, text: str) -> str:
        return self._scrub_text(text, self.credentials)

    @staticmethod
    def _scrub_text(text: str, credentials: GitCredentials | None) -> str:
        """`text` without credentials: URL user-info, the token, and its Basic-auth encoding."""
        text = _URL_USERINFO_RE.sub(r"\1***@", text)
        if credentials and credentials.token:
            basic = base64.b64encode(f"{credentials.username}:{credentials.token}".encode()).decode()
            for secret in (credentials.token, basic):
                text = text.replace(secret, "***")
        return text

    def _execute(self, runner: git.Git, args: tuple[str, ...], env: Mapping[str, str]) -> _Output:
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
        return _Output(status=int(status or 0), stdout=stdout or b"", stderr=err)

    def _failure(self, args: tuple[str, ...], out: _Output, *, network: bool) -> Exception:
        verb = args[0]
        if out.status < 0 or out.stderr.startswith("Timeout:"):
            # Killed by the watchdog (or a signal): the remote, or the machine, was too slow.
            return RepoUnavailable(f"{self.code}: git {verb} did not finish within {self.timeout:g}s")
        text = self._scrub(out.stderr or out.stdout.decode(errors="replace"))
        message = f"{self.code}: git {verb} failed: {_summary(text)}"
        if _CREDENTIALS_RE.search(text):
            # git answers a 401 to our header by asking for a user name, which reads like a prompt problem.
            message = (
                f"{self.code}: git {verb} failed: the git server refused edgefleet's credentials (401; check "
                f"FLEET_GIT_TOKEN, its scopes and FLEET_GIT_TOKEN_HOST): {_summary(text)}"
            )
        if network:
            if str(self.path) in text and _CORRUPT_RE.search(text):
                # A network command tripping over our own damaged clone (e.g. fetch reading a bad index).
                return _CorruptClone(message)
            return RepoError(message) if _PERMANENT_RE.search(text) else RepoUnavailable(message)
        if _LOCAL_TRANSIENT_RE.search(text):
            return RepoUnavailable(message)
        if _CORRUPT_RE.search(text):
            return _CorruptClone(message)
        return RepoError(message)

    def _run_bare(self, *args: str, cwd: Path | None = None) -> _Output:
        """A git command outside any clone (ls-remote, init), as a network operation."""
        directory = cwd or self.cache_dir
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RepoUnavailable(f"{self.code}: cannot create {directory}: {exc.strerror}") from None
        # The cache may live inside another repository (var/ in a checkout): never discover it.
        env = {**self._base_env, "GIT_CEILING_DIRECTORIES": str(directory)}
        out = self._execute(git.Git(directory), args, env)
        if out.status != 0:
            raise self._failure(args, out, network=True)
        return out

    def _run_clone(
        self,
        runner: git.Git,
        *args: str,
        network: bool = False,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> _Output:
        # GIT_DIR pins every command to our clone: with a damaged .git, git must fail, not walk up to a
        # parent directory's repository and reset *that*.
        full_env = {**self._base_env, "GIT_DIR": str(self.path / ".git"), "GIT_WORK_TREE": str(self.path)}
        if env:
            full_env.update(env)
        out = self._execute(runner, args, full_env)
        if check and out.status != 0:
            raise self._failure(args, out, network=network)
        return out


class _Clone:
    """The working clone during one locked session (internal)."""

    #: Run `git gc --auto` after about one push in this many (automatic maintenance is off, see _build_env).
    gc_every = 32

    def __init__(self, site: SiteRepo, repo: git.Repo):
        self.site = site
        self.repo = repo
        self.root = site.path

    def run(
        self, *args: str, network: bool = False, check: bool = True, env: Mapping[str, str] | None = None
    ) -> _Output:
        return self.site._run_clone(self.repo.git, *args, network=network, check=check, env=env)

    def _ref(self, ref: str) -> str | None:
        # Pure Python (loose or packed refs): no git process, no object database.
        try:
            return str(SymbolicReference.dereference_recursive(self.repo, ref))
        except (ValueError, OSError):
            return None

    def fetch(self) -> str | None:
        """Fetch the remote's main; its head, or None when the remote has none (empty repository)."""
        out = self.run(
            "fetch", "-q", "--no-tags", "--prune", "--no-write-fetch-head", "origin", network=True, check=False
        )
        if out.status == 0:
            return self._ref(REMOTE_MAIN)
        if "couldn't find remote ref" in out.stderr:
            # Empty repository (or no main yet): forget a main we may have seen before.
            self.run("update-ref", "-d", REMOTE_MAIN)
            return None
        raise self.site._failure(("fetch",), out, network=True)

    def sync(self) -> str | None:
        """Fetch and make the clone exactly the remote's main, discarding leftovers; the remote head."""
        head = self.fetch()
        if head is not None:
            self.run("reset", "-q", "--hard", REMOTE_MAIN)
            # Untracked leftovers of an interrupted session must not slip into our commit.
            self.run("clean", "-q", "-ffdx")
            return head
        if (
            self._ref(LOCAL_MAIN) is not None
            or (self.root / ".git" / "index").exists()
            or any(entry.name != ".git" for entry in os.scandir(self.root))
        ):
            # The remote is empty but the clone is not (a push that failed, a repository emptied by
            # hand): start again from nothing.
            raise _CorruptClone("the remote is empty but the clone has content")
        return None

    def resolve(self, revision: str) -> str | None:
        out = self.run("rev-parse", "-q", "--verify", "--end-of-options", f"{revision}^{{commit}}", check=False)
        return out.stdout.decode().strip() if out.status == 0 else None

    def place(self, blobs: Mapping[str, bytes], prefix: str | None) -> None:
        """Write `blobs` into the work tree and delete the other files under `prefix`; stage everything."""
        root = self.root
        if prefix is not None and self._real_directories(_ancestors(prefix)):
            # (Under a symlinked or file ancestor nothing is tracked, and walking it could leave the clone.)
            top = root / prefix
            if top.is_symlink() or top.is_file():
                if prefix not in blobs:
                    top.unlink()
            elif top.is_dir():
                for dirpath, dirnames, filenames in os.walk(top, topdown=False):
                    for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                        rel = PurePosixPath(os.path.relpath(os.path.join(dirpath, name), root)).as_posix()
                        if rel not in blobs:
                            os.unlink(os.path.join(dirpath, name))
                    if dirpath != str(top) and not os.listdir(dirpath):
                        os.rmdir(dirpath)
        for rel, data in blobs.items():
            self._write_file(rel, data)
        self.run("add", "-A")

    def _real_directories(self, rels: list[str]) -> bool:
        return all(not (self.root / rel).is_symlink() and (self.root / rel).is_dir() for rel in rels)

    def _write_file(self, rel: str, data: bytes) -> None:
        # Walk down component by component: a symlink or a file where we need a directory is replaced,
        # so a committed symlink (`apps -> /etc`) can never make us write outside the clone.
        current = self.root
        parts = rel.split("/")
        for part in parts[:-1]:
            current = current / part
            if current.is_symlink() or (current.exists() and not current.is_dir()):
                current.unlink()
            if not current.exists():
                current.mkdir()
        target = current / parts[-1]
        if target.is_symlink():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
        elif target.is_file() and target.read_bytes() == data:
            return  # unchanged: keep git's stat cache valid
        target.write_bytes(data)

    def restore(self, revision: str, scope: str) -> None:
        out = self.run("restore", f"--source={revision}", "--staged", "--worktree", "--", scope, check=False)
        if out.status != 0 and "did not match any file" not in out.stderr:
            raise self.site._failure(("restore",), out, network=False)

    def staged_changes(self) -> bool:
        out = self.run("diff", "--cached", "--quiet", check=False)
        if out.status not in (0, 1):
            raise self.site._failure(("diff",), out, network=False)
        return out.status == 1

    def commit(self, message: str, author: Author, *, allow_empty: bool = False) -> str:
        env = {
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_COMMITTER_NAME": COMMITTER.name,
            "GIT_COMMITTER_EMAIL": COMMITTER.email,
        }
        args = ["commit", "-q", "--no-verify", "--no-gpg-sign", "--cleanup=whitespace", "-m", message]
        if allow_empty:
            args.append("--allow-empty")
        self.run(*args, env=env)
        revision = self._ref("HEAD")
        if revision is None:  # pragma: no cover - git just wrote it
            raise _CorruptClone("HEAD unreadable right after a commit")
        return revision

    def push(self) -> bool:
        """True when main moved to our HEAD; False when another writer got there first (retry)."""
        out = self.run("push", "--porcelain", "origin", f"HEAD:{LOCAL_MAIN}", network=True, check=False)
        if out.status == 0:
            return True
        if _PUSH_RACE_RE.search(out.stdout.decode(errors="replace") + "\n" + out.stderr):
            return False
        if out.status > 0 and "[remote rejected]" in out.stdout.decode(errors="replace"):
            # A hook or branch protection said no: a human has to look.
            text = self.site._scrub(out.stdout.decode(errors="replace") + "\n" + out.stderr)
            raise RepoError(f"{self.site.code}: push refused by the remote: {_summary(text)}")
        raise self.site._failure(("push",), out, network=True)

    def maybe_gc(self) -> None:
        if random.randrange(self.gc_every) == 0:  # noqa: S311 - sampling, not security
            self.run("gc", "--auto", "--quiet", check=False)
