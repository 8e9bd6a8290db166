"""SiteRepo's clone cache: a damaged clone is recloned, stale locks cleared, a busy clone times out, an empty remote
is bootstrapped, and no git process or file descriptor outlives an operation."""

import fcntl
import os
import subprocess
from pathlib import Path

import pytest

from sites.repos import (
    CommitResult,
    RepoUnavailable,
    SiteRepo,
)
from tests.sites.gitcheck import (
    ANN,
    git,
    git_children,
    log,
    make_bare,
    tree_files,
)

# --- the clone ------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["delete HEAD", "garbage HEAD", "delete .git", "garbage index", "file"])
def test_a_damaged_clone_is_recloned(damage: str, repo: SiteRepo, bare: Path, seeded: CommitResult) -> None:
    # Given a clone damaged by a crash or a disk problem
    dotgit = repo.path / ".git"
    if damage == "delete HEAD":
        (dotgit / "HEAD").unlink()
    elif damage == "garbage HEAD":
        (dotgit / "HEAD").write_bytes(b"\x00garbage\xff")
    elif damage == "delete .git":
        subprocess.run(["rm", "-rf", str(dotgit)], check=True)
    elif damage == "garbage index":
        (dotgit / "index").write_bytes(b"DIRC garbage, not an index")
    else:
        subprocess.run(["rm", "-rf", str(repo.path)], check=True)
        repo.path.write_text("not a directory")
    # When the site is written
    result = repo.write({"apps/pos/deploy.yaml": "image: pos:2\n"}, owned_prefix="apps/pos", message="2", author=ANN)
    # Then the clone was rebuilt and the write landed on top of the remote history
    assert result.changed and log(bare) == [result.revision, seeded.revision]
    assert (repo.path / ".git" / "HEAD").read_text().strip() == "ref: refs/heads/main"


def test_a_stale_index_lock_is_cleared(repo: SiteRepo, bare: Path, seeded: CommitResult) -> None:
    # Given a git process killed mid-operation left its lock files behind
    (repo.path / ".git" / "index.lock").write_text("")
    (repo.path / ".git" / "refs" / "heads" / "main.lock").write_text("")
    # When the site is written
    result = repo.write({"apps/pos/deploy.yaml": "image: pos:2\n"}, owned_prefix="apps/pos", message="2", author=ANN)
    # Then the write succeeded and the stale locks are gone
    assert result.changed and log(bare)[0] == result.revision
    assert not (repo.path / ".git" / "index.lock").exists()


def test_a_busy_clone_times_out_as_unavailable(bare: Path, tmp_path: Path, seeded: CommitResult) -> None:
    site = SiteRepo("TX-0001", str(bare), cache_dir=tmp_path / "cache", lock_timeout=0.3)
    index_lock = site.path / ".git" / "index.lock"
    # Given another operation holds the clone (and is busy with its index)
    with open(tmp_path / "cache" / "TX-0001.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        index_lock.write_text("")
        # When we write, then we give up after the lock timeout, as transient
        with pytest.raises(RepoUnavailable, match="busy"):
            site.write({"a": "b"}, owned_prefix=None, message="m", author=ANN)
        # And the running operation's index.lock was not touched: only a lock holder may call it stale
        assert index_lock.exists()
        # head() needs no clone and no lock
        assert site.head() == seeded.revision


def test_untracked_leftovers_are_not_committed(repo: SiteRepo, bare: Path, seeded: CommitResult) -> None:
    # Given a crash left a stray file in the clone
    (repo.path / "stray.yaml").write_text("half-written\n")
    # When another change is written
    repo.write({"apps/pos/deploy.yaml": "image: pos:2\n"}, owned_prefix="apps/pos", message="2", author=ANN)
    # Then the stray file is not part of the site's state
    assert "stray.yaml" not in tree_files(bare)


# --- empty repositories ---------------------------------------------------------------------------


def test_an_empty_remote_is_bootstrapped_by_the_first_write(repo: SiteRepo, bare: Path) -> None:
    assert repo.exists() is True
    assert repo.head() is None
    assert repo.read("kustomization.yaml") is None
    result = repo.write({"kustomization.yaml": "k\n"}, owned_prefix=None, message="first", author=ANN)
    assert result.changed and result.previous is None
    assert log(bare) == [result.revision]
    assert git(f"--git-dir={bare}", "rev-list", "--max-parents=0", "main") == result.revision


def test_ensure_initialized_creates_main_once(repo: SiteRepo, bare: Path) -> None:
    first = repo.ensure_initialized(author=ANN)
    again = repo.ensure_initialized(author=ANN)
    assert first.changed and not again.changed and again.revision == first.revision
    assert log(bare) == [first.revision] and tree_files(bare) == set()


def test_ensure_initialized_can_create_a_local_bare_repository(tmp_path: Path) -> None:
    target = tmp_path / "repos" / "TX-0005.git"
    site = SiteRepo("TX-0005", f"file://{target}", cache_dir=tmp_path / "cache")
    assert site.exists() is False
    result = site.ensure_initialized(author=ANN, create=True)
    assert log(target) == [result.revision]
    assert site.head() == result.revision


def test_a_remote_emptied_by_hand_starts_a_new_history(repo: SiteRepo, bare: Path, seeded: CommitResult) -> None:
    git(f"--git-dir={bare}", "update-ref", "-d", "refs/heads/main")
    assert repo.head() is None
    result = repo.write({"a.yaml": "a\n"}, owned_prefix=None, message="again", author=ANN)
    assert log(bare) == [result.revision] and tree_files(bare) == {"a.yaml"}


# --- resources ------------------------------------------------------------------------------------


def test_no_git_process_or_file_descriptor_outlives_the_operations(tmp_path: Path) -> None:
    # Given several sites, and one operation done to warm up lazily-opened things (logging, imports)
    sites = [
        SiteRepo(f"TX-01{i:02}", str(make_bare(tmp_path / "remotes" / f"TX-01{i:02}.git")), cache_dir=tmp_path / "c")
        for i in range(5)
    ]
    sites[0].head()
    fds_before = len(os.listdir("/proc/self/fd"))
    # When 50 operations run: writes, idempotent re-writes, reads, heads, a revert
    revisions: dict[int, str | None] = {}
    for n in range(10):
        for i, site in enumerate(sites):
            if n % 5 == 3:
                assert site.read("apps/app/config.yaml") is not None
            elif n % 5 == 4:
                assert site.head() is not None
            else:
                result = site.write(
                    {"apps/app/config.yaml": f"n: {n // 2}\n"}, owned_prefix="apps/app", message="m", author=ANN
                )
                revisions.setdefault(i, result.revision)
    sites[0].revert_to(str(revisions[0]), owned_prefix="apps/app", message="back", author=ANN)
    # Then no git child process is left, and the descriptor count is back where it was
    assert git_children() == []
    assert len(os.listdir("/proc/self/fd")) - fds_before <= 2
