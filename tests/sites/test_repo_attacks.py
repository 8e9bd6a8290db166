"""The git policy at use, against real git, real HTTP servers and a real Celery worker.

A repo_url planted straight into the database (past every check on write) must never make a worker
send the git token to another server, run a command (`ext::`), or read a local repository outside the
allowed roots; and git itself, as SiteRepo runs it, refuses every transport but the URL's own, so a URL
that slipped past the policy would still be stopped. Each test has a control showing that the attack
works without the defence, so it fails if the defence goes.
"""

import base64
import http.server
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.conf import settings as django_settings

from fleet.celery import app as celery_app
from rollouts.models import SiteSyncState
from rollouts.tasks import DRIFT_SITES_TASK
from sites.models import Site
from sites.repo_urls import GitPolicy, HostEntry
from sites.repos import Author, GitCredentials, RepoError, SiteRepo, UnsafeUrl
from tests.factories import SiteFactory
from tests.support import wait_until
from tests.support.services import Worker, worker_env

SECRET = "glpat-ATTACK-0123456789"  # noqa: S105 - a fake token whose travels we watch
BASIC = "Basic " + base64.b64encode(f"x-access-token:{SECRET}".encode()).decode()
HERMETIC = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}


class GitServer(http.server.ThreadingHTTPServer):
    """A stand-in git server on loopback: records each request's Authorization header, answers 403 (or
    redirects everything to `redirect_to`)."""

    seen: list[str | None]
    redirect_to: str | None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def url(self, path: str) -> str:
        return f"http://{self.host}/{path}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: GitServer

    def do_GET(self) -> None:
        self.server.seen.append(self.headers.get("Authorization"))
        if self.server.redirect_to:
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to + self.path)
        else:
            self.send_response(403)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def git_server(redirect_to: str | None = None) -> Iterator[GitServer]:
    server = GitServer(("127.0.0.1", 0), _Handler)
    server.seen, server.redirect_to = [], redirect_to
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def bare_with_secret(path: Path) -> Path:
    """A bare repository whose main holds `secret.txt`."""
    work = path.parent / "work"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], env=HERMETIC, check=True)
    (work / "secret.txt").write_text("the control plane's secret\n")
    subprocess.run(["git", "add", "."], cwd=work, env=HERMETIC, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "s"],
        cwd=work, env=HERMETIC, check=True,
    )  # fmt: skip
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(path)], env=HERMETIC, check=True)
    return path


def planted(code: str, url: str) -> Site:
    """A site whose repo_url was written straight into the database, as an old row or an attacker would."""
    SiteFactory(code=code, repo_url="")
    Site.objects.filter(code=code).update(repo_url=url)
    return Site.objects.get(code=code)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the worker, configured from its environment ---------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_worker_sends_the_token_only_to_its_host_whatever_the_database_says(redis_url: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with git_server() as token_host, git_server() as mirror, git_server() as unlisted:
        # Given a worker whose token belongs to the first listed host, and sites planted with other URLs
        env = worker_env(redis_url, tmp_path)
        env.update({"FLEET_GIT_HOSTS": f"{token_host.host},{mirror.host}", "FLEET_GIT_TOKEN": SECRET})
        queue = f"git-policy-{os.getpid()}"  # ours alone: no other worker of the session takes these tasks
        worker = Worker(env, tmp_path / "worker.log", queues=queue, concurrency=1)
        sites = {
            "token host": planted("TX-0001", token_host.url("fleet/TX-0001.git")),
            "listed mirror": planted("TX-0002", mirror.url("fleet/TX-0002.git")),
            "unlisted": planted("TX-0003", unlisted.url("fleet/TX-0003.git")),
            "ext": planted("TX-0004", f"ext::sh -c touch% {marker}"),
        }
        worker.start()
        try:
            # When the drift check runs for each of them in the worker (sent on the worker's own broker:
            # another directory's session fixture may have given this process's producer a different one)
            with celery_app.connection_for_write(redis_url) as connection:
                for site in sites.values():  # one chunk each: a refused site must not hide the others
                    celery_app.send_task(DRIFT_SITES_TASK, args=([site.pk],), queue=queue, connection=connection)
            wait_until(
                lambda: SiteSyncState.objects.filter(site__in=sites.values()).count() == len(sites), 90, "drift checks"
            )
        finally:
            worker.stop()
    messages = {name: SiteSyncState.objects.get(site=site).message for name, site in sites.items()}

    # Then only the token's own host saw it (the control: the worker really holds the token)...
    assert token_host.seen and set(token_host.seen) == {BASIC}, messages
    assert "403" in messages["token host"]
    # ...a listed host that is not the token's was asked without it...
    assert mirror.seen and set(mirror.seen) == {None}
    # ...an unlisted one was never contacted, and the refusals read as sentences
    assert unlisted.seen == []
    assert f"git host {unlisted.host} is not in FLEET_GIT_HOSTS" in messages["unlisted"]
    assert "TX-0004: repository URL refused" in messages["ext"] and "remote helper 'ext'" in messages["ext"]
    assert not marker.exists()


# --- SiteRepo in this process ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_planted_url_fails_the_drift_check_with_a_sentence_and_no_request(settings: Any) -> None:
    from rollouts.drift import drift_check_site

    settings.FLEET_GIT_TOKEN = SECRET
    with git_server() as server:
        settings.FLEET_GIT_HOSTS, settings.FLEET_GIT_TOKEN_HOST = ["gitlab.example.com"], "gitlab.example.com"
        row = drift_check_site(planted("TX-0005", server.url("x.git")))
    assert server.seen == []
    assert row.state == "unknown"
    assert row.message.startswith("repository: TX-0005: repository URL refused: ")
    assert f"git host {server.host} is not in FLEET_GIT_HOSTS (allowed: gitlab.example.com)" in row.message


def test_a_redirect_does_not_carry_the_token_anywhere(tmp_path: Path) -> None:
    with git_server() as elsewhere, git_server(redirect_to=f"http://{elsewhere.host}") as token_host:
        policy = GitPolicy(hosts=(HostEntry.parse(token_host.host),), allow_plain_http=True)
        credentials = GitCredentials(token=SECRET, token_host=token_host.host)
        repo = SiteRepo("TX-0006", token_host.url("x.git"), cache_dir=tmp_path, credentials=credentials, policy=policy)
        with pytest.raises(RepoError, match="returned error: 302"):
            repo.head()
        # Control: plain git follows the same redirect to the other server
        subprocess.run(["git", "ls-remote", token_host.url("x.git")], env=HERMETIC, capture_output=True, timeout=30)
    assert token_host.seen[0] == BASIC
    assert elsewhere.seen == [None]  # only the control's request; ours never got there


@pytest.mark.django_db
def test_a_local_repository_outside_the_roots_is_refused_at_use(tmp_path: Path) -> None:
    outside = Path(tempfile.mkdtemp(prefix="edgefleet-outside-"))
    try:
        bare = bare_with_secret(outside / "secret.git")
        roots = [*django_settings.FLEET_GIT_LOCAL_ROOTS, Path(django_settings.REPO_ROOT)]
        assert not any(bare.resolve().is_relative_to(root) for root in roots)
        site = planted("TX-0007", bare.as_uri())

        with pytest.raises(UnsafeUrl, match="outside the directories local repositories may live in"):
            SiteRepo.for_site(site).read("secret.txt")
        with pytest.raises(UnsafeUrl, match="outside the directories"):
            SiteRepo.for_site(planted("TX-0008", "file:///etc")).head()

        # Control: with its directory allowed, the same URL does read the secret
        allowed = SiteRepo("TX-0007", bare.as_uri(), cache_dir=tmp_path, policy=GitPolicy.local(outside))
        assert allowed.read("secret.txt") == b"the control plane's secret\n"
    finally:
        shutil.rmtree(outside)


def test_production_has_no_local_default_repository(settings: Any) -> None:
    settings.PRODUCTION = True
    with pytest.raises(UnsafeUrl, match="TX-0009: the site has no repository URL"):
        SiteRepo.for_site(SimpleNamespace(code="TX-0009", repo_url=""))


# --- git's own transport restriction ---------------------------------------------------------------


def test_git_itself_refuses_every_transport_but_the_urls_own(tmp_path: Path) -> None:
    bare = bare_with_secret(tmp_path / "secret.git")
    marker = tmp_path / "pwned"
    https_repo = SiteRepo(
        "TX-0010",
        "https://gitlab.example.com/fleet/x.git",
        cache_dir=tmp_path / "cache",
        policy=GitPolicy(hosts=(HostEntry.parse("gitlab.example.com"),)),
    )
    local_repo = SiteRepo("TX-0011", str(bare), cache_dir=tmp_path / "cache", policy=GitPolicy.local(tmp_path))
    git_url = f"git://127.0.0.1:{closed_port()}/x.git"
    https_url = f"https://127.0.0.1:{closed_port()}/x.git"

    # Control: git as a developer runs it reads the local repository and tries git:// and https://
    plain = subprocess.run(["git", "ls-remote", bare.as_uri()], env=HERMETIC, capture_output=True, text=True)
    assert plain.returncode == 0 and "refs/heads/main" in plain.stdout
    for url in (git_url, https_url):
        tried = subprocess.run(["git", "ls-remote", url], env=HERMETIC, capture_output=True, text=True, timeout=30)
        assert "not allowed" not in tried.stderr

    # When our runner is handed URLs the policy would never have let through, git refuses them itself
    refused = {
        (https_repo, bare.as_uri()): "transport 'file' not allowed",
        (https_repo, str(bare)): "transport 'file' not allowed",
        (https_repo, git_url): "transport 'git' not allowed",
        (https_repo, f"ext::sh -c touch% {marker}"): "transport 'ext' not allowed",
        (local_repo, https_url): "transport 'https' not allowed",
        (local_repo, f"fd::{os.devnull}"): "transport 'fd' not allowed",
    }
    for (repo, url), message in refused.items():
        with pytest.raises(RepoError) as caught:
            repo._run_bare("ls-remote", url)
        assert message in str(caught.value), url
    assert not marker.exists()
    # (and the local repository's own transport still works)
    assert local_repo.head() is not None
    local_repo.write({"a.yaml": "a\n"}, owned_prefix=None, message="m", author=Author.of("test"))
