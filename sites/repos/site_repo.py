"""`SiteRepo`: the operations on one site's git repository (head, exists, ensure_initialized, write,
revert_to, find_trailer, read), each one locked session on the site's working clone, a write repeated
from the fetch when its push is overtaken. How it works and why: docs/ARCHITECTURE.md ("Talking to a
site" and "Git repositories and the token").
"""

import logging
import os
import random
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from sites.repo_urls import GitPolicy, RepoLocation, RepoUrlRefused
from sites.repos.clone import Clone
from sites.repos.errors import RepoError, RepoUnavailable, UnsafePath, UnsafeUrl
from sites.repos.refs import UNKNOWN, local_head
from sites.repos.runner import GitCredentials, GitOutput, GitRunner, scrub_credentials
from sites.repos.session import WorkingClone
from sites.repos.values import (
    BRANCH,
    LOCAL_MAIN,
    REMOTE_MAIN,
    Author,
    CommitResult,
    MarkedCommit,
    ancestors,
    clean_path,
)

if TYPE_CHECKING:
    from sites.models import Site

# One logger for the whole adapter, named as before the package was split.
logger = logging.getLogger("sites.repos")

_CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# A commit message trailer we look up: `Token: value`, nothing a regular expression would read as syntax
# beyond the dots, and no newline.
_TRAILER_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,60}: [A-Za-z0-9._:/-]{1,120}")


class SiteRepo:
    """One site's git repository, through a locked working clone. Build with `SiteRepo.for_site(site)`.

    Instances hold configuration only and are safe to share between threads; every public method is
    one session under the clone's file lock, so concurrent callers in any process are serialized.
    Construction checks the URL against `policy` (default: from settings) and raises UnsafeUrl before
    any git process could see it. How a workflow step uses it: docs/ARCHITECTURE.md, "Talking to a site".
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
        self._git = GitRunner(
            code,
            self.location,
            self.credentials,
            timeout=self.timeout,
            cache_dir=self.cache_dir,
            clone_path=self.path,
        )
        self._clone = WorkingClone(self._git, url=self.url, lock_timeout=self.lock_timeout)

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
        return f"<SiteRepo {self.code} {scrub_credentials(self.url, None)}>"

    @property
    def _base_env(self) -> dict[str, str]:
        """The environment every git process of this site starts from (the runner's; tests inspect it)."""
        return self._git.env

    def _run_bare(self, *args: str, cwd: Path | None = None) -> GitOutput:
        """A git command outside any clone (ls-remote, init), as a network operation."""
        return self._git.run_bare(*args, cwd=cwd)

    # --- public operations ------------------------------------------------------------------------

    def head(self) -> str | None:
        """The remote's `main` head, or None for an empty repository: no clone, no lock. A local bare
        repository's refs are read from its files (sites.repos.refs), any other with `git ls-remote`."""
        if self.location.transport == "file" and self.location.path is not None:
            found = local_head(self.location.path, LOCAL_MAIN)
            if found != UNKNOWN:
                return found
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

        def unchanged(clone: Clone, base: str | None) -> None:
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
        directories = {parent for path in blobs for parent in ancestors(path)}
        clashes = sorted(directories.intersection(blobs))
        if clashes:
            raise UnsafePath(f"{clashes[0]!r} is written both as a file and as a directory")

        def apply(clone: Clone, base: str | None) -> None:
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

        def apply(clone: Clone, base: str | None) -> None:
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

        def find(clone: Clone) -> MarkedCommit | None:
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

        return self._clone.session(find)

    def contains(self, revision: str, later: str) -> bool:
        """Whether the commit `later` is `revision` or comes after it (`revision` is in its history):
        a GitOps agent that applied `later` applied `revision` too. Fetches when the clone does not know
        `later` yet; False when either is no commit of this repository."""
        for sha in (revision, later):
            if not re.fullmatch(r"[0-9a-f]{7,64}", sha):
                raise RepoError(f"{self.code}: invalid revision {sha!r}")

        def check(clone: Clone) -> bool:
            if clone.resolve(later) is None:
                clone.fetch()
            if clone.resolve(later) is None or clone.resolve(revision) is None:
                return False
            return clone.run("merge-base", "--is-ancestor", revision, later, check=False).status == 0

        return self._clone.session(check)

    def read(self, path: str, revision: str | None = None) -> bytes | None:
        """The content of `path` at `revision` (default: the remote's current head), or None if there is no
        such file there (or the repository is empty). RepoError if `revision` is unknown."""
        path = clean_path(path)
        if revision is not None and (revision.startswith("-") or not re.fullmatch(r"[\w./^~@{}-]+", revision)):
            raise RepoError(f"{self.code}: invalid revision {revision!r}")

        def read(clone: Clone) -> bytes | None:
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

        return self._clone.session(read)

    # --- the commit loop --------------------------------------------------------------------------

    def _commit(
        self,
        apply: Callable[[Clone, str | None], None],
        *,
        message: str,
        author: Author,
        allow_empty_root: bool = False,
    ) -> CommitResult:
        if not message.strip():
            raise RepoError(f"{self.code}: a commit needs a message")

        def attempt_all(clone: Clone) -> CommitResult:
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

        return self._clone.session(attempt_all)
