"""RefWatch: the simulated agents' cheap poll of a bare repository's branch, against real git."""

import os
import subprocess
from pathlib import Path

from simulator.gitrepo import RefWatch, init_bare, read_ref


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def commit(work: Path, text: str) -> str:
    (work / "file.txt").write_text(text)
    git("add", "file.txt", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", text, cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def test_follows_pushes_from_empty_to_packed(tmp_path: Path) -> None:
    bare = tmp_path / "site.git"
    init_bare(bare)
    watch = RefWatch(bare)
    assert watch.head() is None  # empty: no loose ref, no packed-refs

    work = tmp_path / "work"
    git("init", "-q", "-b", "main", str(work), cwd=tmp_path)
    git("remote", "add", "origin", str(bare), cwd=work)
    first = commit(work, "one")
    assert watch.head() == first
    assert watch.head() == first  # unchanged: answered from the stat, same value

    second = commit(work, "two")
    assert watch.head() == second

    git("pack-refs", "--all", cwd=bare)  # the loose ref goes; packed-refs holds it
    assert not (bare / "refs/heads/main").exists()
    assert watch.head() == second == read_ref(bare)

    third = commit(work, "three")  # a loose ref again, over the packed one
    assert watch.head() == third


def test_every_update_is_seen_even_within_one_clock_tick(tmp_path: Path) -> None:
    """git replaces the ref file by renaming a new one over it, so back-to-back updates (faster than
    the file system's timestamp granularity) still change what stat() says: its inode."""
    bare = tmp_path / "site.git"
    init_bare(bare)
    work = tmp_path / "work"
    git("init", "-q", "-b", "main", str(work), cwd=tmp_path)
    git("remote", "add", "origin", str(bare), cwd=work)
    shas = [commit(work, f"c{i}") for i in range(3)]
    watch = RefWatch(bare)
    ref = bare / "refs/heads/main"
    tick = ref.stat().st_mtime_ns
    for sha in [*shas, shas[0], shas[2], shas[1]]:
        git("update-ref", "refs/heads/main", sha, cwd=bare)
        os.utime(ref, ns=(tick, tick))  # as if in the same tick: same mtime, same size
        assert watch.head() == sha
