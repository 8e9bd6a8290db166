"""A local repository's head read from its files is what `git ls-remote` says, through every state the
files can be in: empty, loose refs, packed refs, a loose ref newer than its packed line; and anything the
reader does not understand is left to git."""

import os
import subprocess
from pathlib import Path

import pytest

from sites.repos import LOCAL_MAIN, SiteRepo
from sites.repos.refs import UNKNOWN, local_head


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}  # fmt: skip
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout


def ls_remote(repo: Path) -> str | None:
    out = git("ls-remote", "--refs", str(repo), LOCAL_MAIN, cwd=repo)
    return out.split()[0] if out.strip() else None


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    repo = tmp_path / "site.git"
    git("init", "-q", "--bare", "-b", "main", str(repo), cwd=tmp_path)
    return repo


def commit(bare: Path, tmp_path: Path, message: str) -> str:
    work = tmp_path / "work"
    if not work.exists():
        git("clone", "-q", str(bare), str(work), cwd=tmp_path)
    git("commit", "-q", "--allow-empty", "-m", message, cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work).strip()


def test_the_files_answer_as_git_does_empty_loose_packed_and_loose_over_packed(bare: Path, tmp_path: Path) -> None:
    assert local_head(bare, LOCAL_MAIN) is None and ls_remote(bare) is None  # empty: no main yet

    first = commit(bare, tmp_path, "first")
    assert (bare / LOCAL_MAIN).is_file()
    assert local_head(bare, LOCAL_MAIN) == ls_remote(bare) == first  # a loose ref

    git("pack-refs", "--all", "--prune", cwd=bare)
    assert not (bare / LOCAL_MAIN).exists() and "refs/heads/main" in (bare / "packed-refs").read_text()
    assert local_head(bare, LOCAL_MAIN) == ls_remote(bare) == first  # packed

    second = commit(bare, tmp_path, "second")  # a new loose ref beside the stale packed line
    assert local_head(bare, LOCAL_MAIN) == ls_remote(bare) == second


def test_what_the_reader_does_not_understand_is_left_to_git(bare: Path, tmp_path: Path) -> None:
    first = commit(bare, tmp_path, "first")
    (bare / LOCAL_MAIN).unlink()
    (bare / LOCAL_MAIN).symlink_to(tmp_path / "elsewhere")  # never followed
    assert local_head(bare, LOCAL_MAIN) == UNKNOWN
    (bare / LOCAL_MAIN).unlink()
    (bare / LOCAL_MAIN).write_text("ref: refs/heads/other\n")  # symbolic: git resolves those
    assert local_head(bare, LOCAL_MAIN) == UNKNOWN
    (bare / LOCAL_MAIN).write_text(first + "\n")
    (bare / "reftable").mkdir()  # another ref storage
    assert local_head(bare, LOCAL_MAIN) == UNKNOWN
    assert local_head(tmp_path / "missing.git", LOCAL_MAIN) == UNKNOWN  # not a repository: git says why


def test_site_repo_head_reads_local_files_and_asks_git_when_they_cannot_answer(
    bare: Path, tmp_path: Path, settings: object
) -> None:
    settings.FLEET_GIT_LOCAL_ROOTS = [str(tmp_path)]  # type: ignore[attr-defined]
    repo = SiteRepo("site", f"file://{bare}", cache_dir=tmp_path / "cache")
    assert repo.head() is None
    first = commit(bare, tmp_path, "first")
    assert repo.head() == first
    (bare / "reftable").mkdir()  # the files cannot answer: git's answer, the same head
    assert repo.head() == first
