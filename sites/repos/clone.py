"""One site's working clone during a locked session: the git steps an operation is made of.

`Clone` fetches, syncs the work tree to the remote's `main`, places files (never following a committed
symlink out of the clone), restores a revision, commits only staged changes and pushes, telling a push
overtaken by another writer (retry) from one the remote refused (a human has to look). It runs git only
through the site's `GitRunner`; the session (`sites.repos.session`) hands it out under the site's lock.
"""

import os
import random
import re
import shutil
from collections.abc import Mapping
from pathlib import PurePosixPath

import git
from git.refs.symbolic import SymbolicReference

from sites.repos.errors import CorruptClone, RepoError
from sites.repos.runner import GitOutput, GitRunner, summary
from sites.repos.values import COMMITTER, LOCAL_MAIN, REMOTE_MAIN, Author, ancestors

# A push overtaken by another writer: fetch, re-apply, push again.
_PUSH_RACE_RE = re.compile(
    r"\[rejected\]|non-fast-forward|fetch first|failed to update ref|cannot lock ref|failed to lock"
    r"|incorrect old value|stale info",
    re.IGNORECASE,
)


class Clone:
    """The working clone during one locked session; valid only inside it (the `git.Repo` closes after)."""

    #: Run `git gc --auto` after about one push in this many (automatic maintenance is off, see GitRunner).
    gc_every = 32

    def __init__(self, runner: GitRunner, repo: git.Repo):
        self.runner = runner
        self.repo = repo
        self.root = runner.clone_path

    def run(
        self, *args: str, network: bool = False, check: bool = True, env: Mapping[str, str] | None = None
    ) -> GitOutput:
        return self.runner.run_in_clone(self.repo.git, *args, network=network, check=check, env=env)

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
        raise self.runner.failure(("fetch",), out, network=True)

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
            raise CorruptClone("the remote is empty but the clone has content")
        return None

    def resolve(self, revision: str) -> str | None:
        out = self.run("rev-parse", "-q", "--verify", "--end-of-options", f"{revision}^{{commit}}", check=False)
        return out.stdout.decode().strip() if out.status == 0 else None

    def place(self, blobs: Mapping[str, bytes], prefix: str | None) -> None:
        """Write `blobs` into the work tree and delete the other files under `prefix`; stage everything."""
        root = self.root
        if prefix is not None and self._real_directories(ancestors(prefix)):
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
            raise self.runner.failure(("restore",), out, network=False)

    def staged_changes(self) -> bool:
        out = self.run("diff", "--cached", "--quiet", check=False)
        if out.status not in (0, 1):
            raise self.runner.failure(("diff",), out, network=False)
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
            raise CorruptClone("HEAD unreadable right after a commit")
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
            text = self.runner.scrub(out.stdout.decode(errors="replace") + "\n" + out.stderr)
            raise RepoError(f"{self.runner.code}: push refused by the remote: {summary(text)}")
        raise self.runner.failure(("push",), out, network=True)

    def maybe_gc(self) -> None:
        if random.randrange(self.gc_every) == 0:  # noqa: S311 - sampling, not security
            self.run("gc", "--auto", "--quiet", check=False)
