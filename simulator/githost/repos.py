"""The repository operations the git host's API needs beyond git's own protocol: whether a repository is
empty, a file's content at a branch, and a commit of one new file (the Repository Files API).

Reads go through simulator.gitrepo (pure Python); the commit is made with git's plumbing on a temporary
index, so the bare repository never needs a work tree, and the branch moves with a compare-and-swap
(`update-ref <new> <old>`) so a push that raced us is never lost.
"""

import asyncio
import os
import tempfile
from pathlib import Path

from simulator.gitrepo import RepoError, read_ref, read_tree

ZERO = "0" * 40
GIT_TIMEOUT = 30.0


class CommitRefused(Exception):
    """The file cannot be committed (it exists, the branch moved meanwhile); the message says why."""


def is_empty(repo: Path) -> bool:
    """No branch at all (GitLab's `empty_repo`)."""
    heads = repo / "refs" / "heads"
    if heads.is_dir() and any(p.is_file() for p in heads.rglob("*")):
        return False
    try:
        packed = (repo / "packed-refs").read_text()
    except OSError:
        return True
    return not any(" refs/heads/" in line for line in packed.splitlines() if not line.startswith(("#", "^")))


def read_file(repo: Path, branch: str, path: str) -> tuple[str, bytes] | None:
    """(commit, content) of `path` at the head of `branch`, or None (no branch, no such file)."""
    sha = read_ref(repo, f"refs/heads/{branch}")
    if sha is None:
        return None
    try:
        files = read_tree(repo, sha)
    except RepoError:
        return None
    content = files.get(path)
    return None if content is None else (sha, content)


async def _git(repo: Path, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> str:
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_DIR": str(repo),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        **(env or {}),
    }
    process = await asyncio.create_subprocess_exec(
        "git",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=full_env,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), GIT_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise CommitRefused(f"git {args[0]} took longer than {GIT_TIMEOUT:g}s") from None
    if process.returncode != 0:
        raise CommitRefused(f"git {args[0]} failed: {err.decode(errors='replace').strip()}")
    return out.decode().strip()


async def commit_file(
    repo: Path, *, branch: str, path: str, content: bytes, message: str, author_name: str, author_email: str
) -> str:
    """Commit a new file on `branch` (creating the branch in an empty repository); the new commit."""
    ref = f"refs/heads/{branch}"
    parent = read_ref(repo, ref)
    if parent is not None and path in read_tree(repo, parent):
        raise CommitRefused("A file with this name already exists")
    with tempfile.TemporaryDirectory(prefix="githost-index-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        if parent is not None:
            await _git(repo, "read-tree", parent, env=env)
        blob = await _git(repo, "hash-object", "-w", "--stdin", stdin=content)
        await _git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
        tree = await _git(repo, "write-tree", env=env)
    people = {
        "GIT_AUTHOR_NAME": author_name,
        "GIT_AUTHOR_EMAIL": author_email,
        "GIT_COMMITTER_NAME": author_name,
        "GIT_COMMITTER_EMAIL": author_email,
    }
    args = ["commit-tree", tree, "-m", message] + (["-p", parent] if parent else [])
    commit = await _git(repo, *args, env=people)
    try:
        await _git(repo, "update-ref", ref, commit, parent or ZERO)
    except CommitRefused:
        raise CommitRefused(f"the branch {branch} moved while the file was committed; try again") from None
    return commit
