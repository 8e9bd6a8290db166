"""SiteRepo against real bare repositories on disk, checked with plain `git` commands. No mocks of git.

"Someone else" (a human, another worker) is played by plain `git clone` + `commit` + `push`, or by a real
git hook in our clone that pushes at the worst possible moment.
"""

import base64
import fcntl
import http.server
import logging
import multiprocessing
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from sites.repo_urls import GitPolicy, HostEntry
from sites.repos import (
    Author,
    CommitResult,
    GitCredentials,
    RepoError,
    RepoUnavailable,
    SiteRepo,
    UnsafePath,
    UnsafeUrl,
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
    me, names = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        if int(rest[1]) == me and name.startswith("git"):
            names.append(name)
    return names


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


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    return make_bare(tmp_path / "remotes" / "TX-0001.git")


@pytest.fixture
def repo(bare: Path, tmp_path: Path) -> SiteRepo:
    return SiteRepo("TX-0001", str(bare), cache_dir=tmp_path / "cache", timeout=10, lock_timeout=10)


@pytest.fixture
def seeded(repo: SiteRepo) -> CommitResult:
    """The repository after a first write: a kustomization at the root and one owned app directory."""
    return repo.write(
        {"kustomization.yaml": "resources: [apps/pos]\n", "apps/pos/deploy.yaml": "image: pos:1\n"},
        owned_prefix="apps/pos",
        message="Roll out pos 1",
        author=ANN,
    )


# --- writing --------------------------------------------------------------------------------------


def test_write_creates_exactly_one_commit_with_author_and_files(repo: SiteRepo, bare: Path) -> None:
    # Given an empty site repository
    # When files are written
    result = repo.write(
        {"apps/pos/deploy.yaml": "image: pos:1\n", "apps/pos/bin.dat": b"\x00\x01\n"},
        owned_prefix="apps/pos",
        message="Roll out pos 1",
        author=ANN,
    )
    # Then main has one commit, by the actor, holding exactly those bytes
    assert result.changed and result.previous is None
    assert log(bare) == [result.revision]
    assert git(f"--git-dir={bare}", "log", "-1", "--format=%an|%ae|%cn|%s", "main") == (
        "Ann Operator|ann@example.com|edgefleet|Roll out pos 1"
    )
    assert tree_files(bare) == {"apps/pos/deploy.yaml", "apps/pos/bin.dat"}
    assert show(bare, "main", "apps/pos/deploy.yaml") == "image: pos:1"
    assert repo.read("apps/pos/bin.dat") == b"\x00\x01\n"
    assert repo.head() == result.revision


def test_writing_the_same_files_again_creates_no_commit(repo: SiteRepo, bare: Path, seeded: CommitResult) -> None:
    # When the same write happens again (a retried workflow step)
    again = repo.write(
        {"kustomization.yaml": "resources: [apps/pos]\n", "apps/pos/deploy.yaml": "image: pos:1\n"},
        owned_prefix="apps/pos",
        message="Roll out pos 1",
        author=ANN,
    )
    # Then nothing is committed and the same revision is reported
    assert again == CommitResult(revision=seeded.revision, changed=False, previous=seeded.revision, attempts=1)
    assert log(bare) == [seeded.revision]


def test_a_commit_is_found_again_by_its_trailer_with_its_parent(
    repo: SiteRepo, bare: Path, seeded: CommitResult, tmp_path: Path
) -> None:
    # Given a marked commit, then somebody else's commit on top of it
    marked = repo.write(
        {"apps/pos/deploy.yaml": "image: pos:2\n"},
        owned_prefix="apps/pos",
        message="Roll out pos 2\n\nEdgefleet-Rollout: 4.2",
        author=ANN,
    )
    push_as_someone_else(bare, tmp_path / "human", {"README.md": "hello\n"})
    # When it is looked up by its trailer (as a step that crashed after its push does)
    found = repo.find_trailer("Edgefleet-Rollout: 4.2")
    # Then it is that commit with the head before it as parent; a trailer that only starts the same, or
    # whose dot would match any character, is not confused with it
    assert found is not None and (found.revision, found.parent) == (marked.revision, seeded.revision)
    assert repo.find_trailer("Edgefleet-Rollout: 4") is None
    assert repo.find_trailer("Edgefleet-Rollout: 4x2") is None
    with pytest.raises(RepoError, match="invalid trailer"):
        repo.find_trailer("Edgefleet-Rollout: $(reboot)")


def test_the_first_commit_found_by_its_trailer_has_no_parent(repo: SiteRepo) -> None:
    assert repo.find_trailer("Edgefleet-Rollout: 1") is None  # an empty repository
    first = repo.write({"a.yaml": "a: 1\n"}, owned_prefix=None, message="first\n\nEdgefleet-Rollout: 1", author=ANN)
    found = repo.find_trailer("Edgefleet-Rollout: 1")
    assert found is not None and (found.revision, found.parent) == (first.revision, None)


def test_owned_prefix_removes_only_files_the_write_owns(
    repo: SiteRepo, bare: Path, seeded: CommitResult, tmp_path: Path
) -> None:
    # Given an extra owned file, and a human's file outside the owned directory
    repo.write(
        {"apps/pos/deploy.yaml": "image: pos:1\n", "apps/pos/old/config.yaml": "x: 1\n"},
        owned_prefix="apps/pos",
        message="add config",
        author=ANN,
    )
    push_as_someone_else(bare, tmp_path / "human", {"apps/kiosk/deploy.yaml": "image: kiosk:3\n"})
    # When a write of the owned directory no longer lists some of its files
    result = repo.write(
        {"apps/pos/deploy.yaml": "image: pos:2\n"}, owned_prefix="apps/pos", message="pos 2", author=ANN
    )
    # Then those are removed, and nothing outside the owned directory is
    assert result.changed
    assert tree_files(bare) == {"kustomization.yaml", "apps/pos/deploy.yaml", "apps/kiosk/deploy.yaml"}
    assert show(bare, "main", "apps/pos/deploy.yaml") == "image: pos:2"


def test_write_without_owned_prefix_removes_nothing(repo: SiteRepo, bare: Path, seeded: CommitResult) -> None:
    repo.write({"apps/other/a.yaml": "a\n"}, owned_prefix=None, message="add other", author=ANN)
    assert tree_files(bare) == {"kustomization.yaml", "apps/pos/deploy.yaml", "apps/other/a.yaml"}


def test_a_file_can_become_a_directory_and_back(repo: SiteRepo, bare: Path, seeded: CommitResult) -> None:
    repo.write({"apps/pos/deploy.yaml/x.yaml": "x\n"}, owned_prefix="apps/pos", message="dir", author=ANN)
    assert tree_files(bare) == {"kustomization.yaml", "apps/pos/deploy.yaml/x.yaml"}
    repo.write({"apps/pos/deploy.yaml": "image: pos:1\n"}, owned_prefix="apps/pos", message="file", author=ANN)
    assert tree_files(bare) == {"kustomization.yaml", "apps/pos/deploy.yaml"}


# --- reverting ------------------------------------------------------------------------------------


def test_revert_to_brings_the_owned_prefix_back_as_a_new_commit(
    repo: SiteRepo, bare: Path, seeded: CommitResult
) -> None:
    # Given a second release that changed, added and removed files in the owned directory
    second = repo.write(
        {"apps/pos/deploy.yaml": "image: pos:2\n", "apps/pos/hpa.yaml": "max: 3\n"},
        owned_prefix="apps/pos",
        message="Roll out pos 2",
        author=ANN,
    )
    repo.write({"README.md": "kept\n"}, owned_prefix=None, message="readme", author=ANN)
    # When rolled back to the first revision
    back = repo.revert_to(seeded.revision, owned_prefix="apps/pos", message="Roll back pos", author=ANN)
    # Then a new commit on top of head holds the old subtree; history is intact; the rest is untouched
    history = log(bare)
    assert back.changed and history[0] == back.revision and history[1] == back.previous
    assert second.revision in history and len(history) == 4
    assert git(f"--git-dir={bare}", "rev-parse", f"{back.revision}:apps/pos") == git(
        f"--git-dir={bare}", "rev-parse", f"{seeded.revision}:apps/pos"
    )
    assert show(bare, "main", "README.md") == "kept"
    # And reverting again is a no-op
    assert repo.revert_to(seeded.revision, owned_prefix="apps/pos", message="again", author=ANN).changed is False
    assert len(log(bare)) == 4


def test_revert_to_without_prefix_restores_the_whole_tree(repo: SiteRepo, bare: Path, seeded: CommitResult) -> None:
    repo.write(
        {"README.md": "x\n", "apps/pos/deploy.yaml": "image: pos:2\n"}, owned_prefix=None, message="b", author=ANN
    )
    back = repo.revert_to(seeded.revision, message="Roll back everything", author=ANN)
    assert git(f"--git-dir={bare}", "rev-parse", f"{back.revision}^{{tree}}") == git(
        f"--git-dir={bare}", "rev-parse", f"{seeded.revision}^{{tree}}"
    )
    assert len(log(bare)) == 3


def test_revert_to_an_unknown_revision_is_a_permanent_error(repo: SiteRepo, seeded: CommitResult) -> None:
    with pytest.raises(RepoError, match="not a commit"):
        repo.revert_to("0" * 40, owned_prefix="apps/pos", message="back", author=ANN)
    with pytest.raises(RepoError, match="invalid revision"):
        repo.revert_to("--upload-pack=evil", message="back", author=ANN)


def test_read_at_a_revision_and_missing_files(repo: SiteRepo, seeded: CommitResult) -> None:
    repo.write({"apps/pos/deploy.yaml": "image: pos:2\n"}, owned_prefix="apps/pos", message="2", author=ANN)
    assert repo.read("apps/pos/deploy.yaml") == b"image: pos:2\n"
    assert repo.read("apps/pos/deploy.yaml", seeded.revision) == b"image: pos:1\n"
    assert repo.read("apps/pos/nothing.yaml") is None
    assert repo.read("apps/pos") is None  # a directory is not a file


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


# --- path safety ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "../outside", "apps/../../outside", ".git/config", "apps/.git/hooks/x", ".GIT/x", "", "a\\b"],
)
def test_unsafe_paths_are_refused(path: str, repo: SiteRepo, bare: Path, seeded: CommitResult) -> None:
    with pytest.raises(UnsafePath) as caught:
        repo.write({path: "x"}, owned_prefix=None, message="m", author=ANN)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, RepoError)
    with pytest.raises(UnsafePath):
        repo.write({"ok.yaml": "x"}, owned_prefix=path or "..", message="m", author=ANN)
    assert log(bare) == [seeded.revision]


def test_a_committed_symlink_cannot_redirect_a_write(
    repo: SiteRepo, bare: Path, seeded: CommitResult, tmp_path: Path
) -> None:
    # Given a human committed `apps/evil -> <a directory outside the clone>`
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious\n")
    human = tmp_path / "human"
    git("clone", "-q", "--branch", "main", str(bare), str(human))
    os.symlink(outside, human / "apps" / "evil")
    git("add", "-A", cwd=human)
    git("-c", "user.name=Bob", "-c", "user.email=b@example.com", "commit", "-qm", "link", cwd=human)
    git("push", "-q", "origin", "HEAD:main", cwd=human)
    # When we write through it and own it
    repo.write({"apps/evil/x.yaml": "x\n"}, owned_prefix="apps/evil", message="m", author=ANN)
    # Then nothing outside the clone was written or removed; the symlink became a directory in the repo
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    assert show(bare, "main", "apps/evil/x.yaml") == "x"


# --- remotes that fail, and secrets ---------------------------------------------------------------


@pytest.mark.parametrize("url_of", [str, lambda p: f"file://{p}"], ids=["path", "file-url"])
def test_a_missing_remote_is_a_permanent_error(url_of: object, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "TX-0009.git"
    site = SiteRepo("TX-0009", url_of(missing), cache_dir=tmp_path / "cache", timeout=10)  # type: ignore[operator]
    with pytest.raises(RepoError) as caught:
        site.write({"a": "b"}, owned_prefix=None, message="m", author=ANN)
    assert "TX-0009" in str(caught.value) and "does not appear to be a git repository" in str(caught.value)
    with pytest.raises(RepoError):
        site.head()
    assert site.exists() is False


def test_a_token_never_appears_in_errors_repr_or_logs(
    settings: object, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a token configured in settings and an HTTPS remote that refuses connections
    settings.REPO_CACHE_DIR = tmp_path / "cache"
    settings.FLEET_GIT_TOKEN = SECRET_TOKEN
    settings.FLEET_GIT_USERNAME = "deploy"
    settings.FLEET_GIT_TIMEOUT = 10.0
    server = f"127.0.0.1:{closed_port()}"
    settings.FLEET_GIT_HOSTS, settings.FLEET_GIT_TOKEN_HOST = [server], server
    caplog.set_level(logging.DEBUG)
    site = SiteRepo.from_settings("TX-0002", f"https://{server}/fleet/TX-0002.git")
    assert any(key.endswith(".extraHeader") for key in site._base_env.values())  # the token is in play
    # When we try to use it
    with pytest.raises(RepoUnavailable) as caught:
        site.write({"a": "b"}, owned_prefix=None, message="m", author=ANN)
    with pytest.raises(RepoUnavailable) as caught_head:
        site.head()
    # Then it is transient, and the token is nowhere to be seen
    basic = base64.b64encode(f"deploy:{SECRET_TOKEN}".encode()).decode()
    for text in (str(caught.value), str(caught_head.value), repr(site), repr(site.credentials), caplog.text):
        assert SECRET_TOKEN not in text and basic not in text
    assert "TX-0002" in str(caught.value)


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    """A git server that refuses everyone, and records what each request revealed."""

    seen: list[dict[str, object]] = []

    def do_GET(self) -> None:
        # While git waits for this answer, look at the command line of every process for the token.
        leaked = []
        for entry in os.listdir("/proc"):
            try:
                if entry.isdigit() and SECRET_TOKEN.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    leaked.append(entry)
            except OSError:
                pass
        self.seen.append({"authorization": self.headers.get("Authorization"), "argv_leaks": leaked})
        self.send_response(403)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def refusing_server() -> Iterator[str]:
    _RecordingHandler.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RecordingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_token_travels_as_a_header_never_on_a_command_line(refusing_server: str, tmp_path: Path) -> None:
    # Given a token for a (loopback) HTTP server that refuses it
    server = refusing_server.removeprefix("http://")
    credentials = GitCredentials(token=SECRET_TOKEN, username="deploy", token_host=server)
    site = SiteRepo(
        "TX-0003",
        f"{refusing_server}/TX-0003.git",
        cache_dir=tmp_path / "cache",
        credentials=credentials,
        policy=loopback_policy(server),
    )
    # When we fetch
    with pytest.raises(RepoError) as caught:
        site.read("a.yaml")
    # Then the refusal is permanent, the server got the Basic header, and no process had it in its argv
    basic = base64.b64encode(f"deploy:{SECRET_TOKEN}".encode()).decode()
    assert _RecordingHandler.seen and _RecordingHandler.seen[0]["authorization"] == f"Basic {basic}"
    assert all(request["argv_leaks"] == [] for request in _RecordingHandler.seen)
    assert SECRET_TOKEN not in str(caught.value) and basic not in str(caught.value)
    assert "403" in str(caught.value)


def test_a_remote_that_hangs_is_killed_after_the_timeout(tmp_path: Path) -> None:
    # Given a server that accepts connections and never answers
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        server = f"127.0.0.1:{listener.getsockname()[1]}"
        site = SiteRepo(
            "TX-0004", f"http://{server}/x.git", cache_dir=tmp_path, timeout=1.0, policy=loopback_policy(server)
        )
        # When we ask for its head, then it gives up after the timeout, as transient, leaving no process behind
        with pytest.raises(RepoUnavailable, match="did not finish within 1s"):
            site.head()
    assert git_children() == []


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


# --- construction ---------------------------------------------------------------------------------


def test_for_site_reads_settings_and_defaults_to_the_local_repository_root(settings: object, tmp_path: Path) -> None:
    settings.REPO_ROOT = tmp_path / "repos"
    settings.REPO_CACHE_DIR = tmp_path / "cache"
    settings.FLEET_GIT_SSH_KEY_FILE = "/keys/deploy key"
    site = SiteRepo.for_site(SimpleNamespace(code="TX-0412", repo_url=""))
    assert site.url == str(tmp_path / "repos" / "TX-0412.git")
    assert site.path == tmp_path / "cache" / "TX-0412"
    assert "-i '/keys/deploy key' -o IdentitiesOnly=yes" in site._base_env["GIT_SSH_COMMAND"]
    assert "StrictHostKeyChecking=accept-new" in site._base_env["GIT_SSH_COMMAND"]


def test_url_credentials_are_refused_without_being_repeated_and_bad_inputs_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafeUrl) as caught:
        SiteRepo("TX-0006", "https://bob:hunter2@git.example.com/x.git", cache_dir=tmp_path)
    assert "hunter2" not in str(caught.value) and "password" in str(caught.value)
    with pytest.raises(RepoError):
        SiteRepo("../etc", "/tmp/x.git", cache_dir=tmp_path)
    with pytest.raises(RepoError):
        SiteRepo("TX-0006", "--upload-pack=touch /tmp/pwned", cache_dir=tmp_path)
    with pytest.raises(ValueError):
        Author("Eve <eve@example.com>", "eve@example.com")


def test_author_of_an_actor() -> None:
    user = SimpleNamespace(get_username=lambda: "ann", get_full_name=lambda: "Ann Operator", email="ann@example.com")
    assert Author.of(user) == ANN
    assert Author.of("beat") == Author("beat", "beat@edgefleet.invalid")
