"""SiteRepo against hostile paths and failing remotes: unsafe paths and symlinks refused, a missing or hanging
remote, and a token that never shows in errors, logs or command lines."""

import base64
import http.server
import logging
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sites.repos import (
    CommitResult,
    GitCredentials,
    RepoError,
    RepoUnavailable,
    SiteRepo,
    UnsafePath,
)
from tests.sites.gitcheck import (
    ANN,
    SECRET_TOKEN,
    closed_port,
    git,
    git_children,
    log,
    loopback_policy,
    show,
)

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
