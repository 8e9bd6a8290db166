"""SiteRepo when someone else writes too: a commit pushed by hand between our writes or between our fetch and our
push is kept, and two processes or threads writing one site both land."""

import multiprocessing
import threading
from pathlib import Path

import pytest

from sites.repos import CommitResult, SiteRepo
from tests.sites.gitcheck import ANN, git, log, push_as_someone_else, show, tree_files

# --- other writers --------------------------------------------------------------------------------


def test_a_commit_pushed_since_our_last_write_is_kept(
    repo: SiteRepo, bare: Path, seeded: CommitResult, tmp_path: Path
) -> None:
    theirs = push_as_someone_else(bare, tmp_path / "human", {"notes.txt": "hello\n"})
    ours = repo.write({"apps/pos/deploy.yaml": "image: pos:2\n"}, owned_prefix="apps/pos", message="2", author=ANN)
    assert ours.previous == theirs and log(bare)[:2] == [ours.revision, theirs]
    assert show(bare, "main", "notes.txt") == "hello"


@pytest.mark.parametrize("hook", ["post-commit", "pre-push"])
def test_a_commit_pushed_between_our_fetch_and_our_push_is_preserved(
    hook: str, repo: SiteRepo, bare: Path, seeded: CommitResult, tmp_path: Path
) -> None:
    # Given someone who pushes right after our commit (post-commit) or while our push is connected (pre-push):
    # a real hook in our clone runs a plain clone+commit+push, once
    script = tmp_path / "someone-else.sh"
    script.write_text(
        f"git clone -q --branch main '{bare}' '{tmp_path}/human'\n"
        f"cd '{tmp_path}/human' && echo hand > hand.txt && git add hand.txt\n"
        "git -c user.name='Bob Human' -c user.email=bob@example.com commit -qm 'hand edit'\n"
        "git push -q origin HEAD:main\n"
    )
    hook_file = repo.path / ".git" / "hooks" / hook
    hook_file.write_text(
        f"#!/bin/sh\ncat >/dev/null\n[ -e '{tmp_path}/done' ] && exit 0\ntouch '{tmp_path}/done'\n"
        f'exec env -i PATH="$PATH" HOME="$HOME" GIT_CONFIG_GLOBAL=/dev/null /bin/sh \'{script}\' >/dev/null 2>&1\n'
    )
    hook_file.chmod(0o755)
    # When we write
    ours = repo.write({"apps/pos/deploy.yaml": "image: pos:2\n"}, owned_prefix="apps/pos", message="2", author=ANN)
    # Then our first push was rejected, and the retry put our commit on top of theirs (no force-push)
    history = log(bare)
    assert ours.attempts == 2 and ours.changed
    assert history[0] == ours.revision and len(history) == 3 and history[2] == seeded.revision
    assert git(f"--git-dir={bare}", "log", "-1", "--format=%an", history[1]) == "Bob Human"
    assert tree_files(bare) == {"kustomization.yaml", "apps/pos/deploy.yaml", "hand.txt"}
    assert show(bare, "main", "apps/pos/deploy.yaml") == "image: pos:2"


def _write_in_child(bare: str, cache_dir: str, index: int) -> None:
    site = SiteRepo("TX-0001", bare, cache_dir=cache_dir, timeout=10, lock_timeout=20)
    for step in range(2):
        site.write({f"p{index}/{step}.yaml": "x\n"}, owned_prefix=None, message=f"p{index} {step}", author=ANN)


def test_two_processes_writing_the_same_site_both_land(repo: SiteRepo, bare: Path, seeded: CommitResult) -> None:
    # Given two worker processes sharing the clone cache
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_write_in_child, args=(str(bare), str(repo.cache_dir), i)) for i in range(2)]
    # When they write to the same site at the same time
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    # Then the lock serialized them: every commit landed
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert len(log(bare)) == 5
    assert {"p0/0.yaml", "p0/1.yaml", "p1/0.yaml", "p1/1.yaml"} <= tree_files(bare)


@pytest.mark.parametrize("shared_cache", [True, False], ids=["same-clone", "separate-clones"])
def test_two_threads_writing_the_same_site_both_land(
    shared_cache: bool, bare: Path, tmp_path: Path, seeded: CommitResult
) -> None:
    # Given two writers: threads sharing a clone (serialized by the lock), or with separate clones (as two
    # machines would be, racing at the push)
    sites = [
        SiteRepo("TX-0001", str(bare), cache_dir=tmp_path / ("cache" if shared_cache else f"cache{i}"), timeout=10)
        for i in range(2)
    ]
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        try:
            for step in range(3):
                sites[index].write({f"t{index}/{step}": "x\n"}, owned_prefix=None, message=f"t{index}", author=ANN)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(log(bare)) == 7
    assert {f"t{i}/{step}" for i in range(2) for step in range(3)} <= tree_files(bare)
