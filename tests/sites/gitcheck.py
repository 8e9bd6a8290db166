"""Plain git for the SiteRepo tests: the remote's history and files as `git` itself reports them, a second
writer pushing by hand, and the bare repositories the `bare`/`repo`/`seeded` fixtures (tests/sites/conftest.py)
are made of."""

import os
import socket
import subprocess
from pathlib import Path

from simulator.harness import child_processes
from sites.repo_urls import GitPolicy, HostEntry
from sites.repos import (
    Author,
)

ANN = Author("Ann Operator", "ann@example.com")
SECRET_TOKEN = "glpat-SUPERSECRET-0123456789"  # noqa: S105 - a fake token whose absence we check


# --- plain git helpers ------------------------------------------------------------------------------


def git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def log(bare: Path) -> list[str]:
    """Commits on the remote's main, newest first ([] for an empty repository)."""
    try:
        return git(f"--git-dir={bare}", "log", "--format=%H", "main").split()
    except subprocess.CalledProcessError:
        return []


def show(bare: Path, revision: str, path: str) -> str:
    return git(f"--git-dir={bare}", "show", f"{revision}:{path}")


def tree_files(bare: Path, revision: str = "main") -> set[str]:
    return set(git(f"--git-dir={bare}", "ls-tree", "-r", "--name-only", revision).split())


def push_as_someone_else(bare: Path, workdir: Path, files: dict[str, str], message: str = "hand edit") -> str:
    """A human's commit on main, made with a plain clone."""
    git("clone", "-q", "--branch", "main", str(bare), str(workdir))
    for path, content in files.items():
        (workdir / path).parent.mkdir(parents=True, exist_ok=True)
        (workdir / path).write_text(content)
    git("add", "-A", cwd=workdir)
    git("-c", "user.name=Bob Human", "-c", "user.email=bob@example.com", "commit", "-qm", message, cwd=workdir)
    git("push", "-q", "origin", "HEAD:main", cwd=workdir)
    return git("rev-parse", "HEAD", cwd=workdir)


def git_children() -> list[str]:
    """Names of the git processes whose parent is this test process."""
    return [name for _pid, name in child_processes() if name.startswith("git")]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def loopback_policy(*hosts: str) -> GitPolicy:
    """A policy listing these loopback servers (host:port), plain HTTP allowed as outside production."""
    return GitPolicy(hosts=tuple(HostEntry.parse(host) for host in hosts), allow_plain_http=True)


# --- fixtures -------------------------------------------------------------------------------------


def make_bare(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "--bare", str(path))
    return path
