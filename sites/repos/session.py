"""One site's working clone on disk, and the locked session every operation runs in.

`WorkingClone.session(operation)` takes an exclusive flock on `<code>.lock` beside the clone, checks the
clone cheaply (re-creating a missing or damaged one), clears lock files a killed git left behind, and
hands `operation` a `Clone` with its own `git.Repo`, closed again afterwards. A clone found damaged
during the operation is re-created once and the operation repeated from the start.
"""

import fcntl
import logging
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import git

from sites.repos.clone import Clone
from sites.repos.errors import CorruptClone, RepoError, RepoUnavailable
from sites.repos.runner import GitRunner
from sites.repos.values import BRANCH, LOCAL_MAIN

# One logger for the whole adapter, named as before the package was split.
logger = logging.getLogger("sites.repos")

T = TypeVar("T")


class WorkingClone:
    """The clone of `url` at `runner.clone_path`, guarded by the lock file `<code>.lock` in `cache_dir`."""

    def __init__(self, runner: GitRunner, *, url: str, lock_timeout: float):
        self.runner = runner
        self.code = runner.code
        self.url = url
        self.path = runner.clone_path
        self.cache_dir = runner.cache_dir
        self.lock_timeout = lock_timeout
        self._lock_path = self.cache_dir / f"{self.code}.lock"

    def session(self, operation: Callable[[Clone], T]) -> T:
        """Run `operation` on a healthy clone under the site lock; re-create a damaged clone once."""
        with self._locked():
            for recovering in (False, True):
                try:
                    if recovering or not self._is_healthy():
                        self._create()
                    else:
                        self._clear_stale_locks()
                    with git.Repo(self.path) as repo:
                        return operation(Clone(self.runner, repo))
                except (CorruptClone, git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
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

    def _is_healthy(self) -> bool:
        """Cheap checks (no git process) that catch a missing or half-deleted clone, a garbage HEAD and a
        changed URL. Deeper damage shows up as a git error (CorruptClone) during the session."""
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

    def _create(self) -> None:
        """A fresh, empty clone: `git init` plus the origin remote; the session's fetch fills it.

        Initialising instead of `git clone` handles an empty remote and a re-clone the same way.
        """
        if self.path.is_symlink() or self.path.is_file():
            self.path.unlink()
        elif self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        self.runner.run_bare("init", "-q", "-b", BRANCH, str(self.path), cwd=self.path)
        self.runner.run_in_clone(git.Git(self.path), "remote", "add", "-t", BRANCH, "origin", self.url)

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
