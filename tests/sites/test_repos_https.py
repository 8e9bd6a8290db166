"""SiteRepo over HTTPS, the production path: against the simulator's git host (git http-backend behind HTTP
Basic), with the control plane's token as a header and the simulator's CA. The same behaviours as
test_repos.py checks on local bare repositories: one commit per change, none for no change, other
writers' commits kept, racing writers both landing, revert and trailers, and refusals that name the
problem without the token.
"""

import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from simulator.testing import Simulator, running_simulator
from sites.githost.gitlab import GitLabHost
from sites.repo_urls import GitPolicy, HostEntry
from sites.repos import Author, GitCredentials, RepoError, SiteRepo

pytestmark = pytest.mark.integration

ANN = Author("Ann Operator", "ann@example.com")


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    with running_simulator(sites=1, state_dir=tmp_path_factory.mktemp("https-sim")) as simulator:
        yield simulator


@pytest.fixture
def project_url(sim: Simulator) -> str:
    host = GitLabHost(url=sim.gitlab_url, token=sim.gitlab_token, group=sim.git_group, ca_file=str(sim.ca_cert))
    return host.ensure_project(f"ZZ-{uuid.uuid4().int % 1_000_000:06d}").clone_url


def _repo(sim: Simulator, url: str, cache: Path, *, token: str | None = None) -> SiteRepo:
    netloc = urlsplit(sim.gitlab_url).netloc
    credentials = GitCredentials(
        token=sim.gitlab_token if token is None else token, token_host=netloc, ca_file=str(sim.ca_cert)
    )
    policy = GitPolicy(hosts=(HostEntry.parse(netloc),))
    code = url.rsplit("/", 1)[1].removesuffix(".git")
    return SiteRepo(code, url, cache_dir=cache, credentials=credentials, policy=policy, timeout=30, lock_timeout=30)


def _plain_git(sim: Simulator, *args: str, cwd: Path | None = None) -> str:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
        "GIT_SSL_CAINFO": str(sim.ca_cert),
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
    }
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


def _with_token(sim: Simulator, url: str) -> str:
    return url.replace("https://", f"https://someone:{sim.gitlab_token}@", 1)


def test_writes_are_one_commit_per_change_and_none_without_one(
    sim: Simulator, project_url: str, tmp_path: Path
) -> None:
    repo = _repo(sim, project_url, tmp_path / "cache")
    files = {"kustomization.yaml": "resources: [apps/pos]\n", "apps/pos/deploy.yaml": "image: pos:1\n"}

    first = repo.write(files, owned_prefix="apps/pos", message="Roll out pos 1\n\nEdgefleet-Rollout: 7", author=ANN)
    again = repo.write(files, owned_prefix="apps/pos", message="Roll out pos 1", author=ANN)

    assert first.changed and not again.changed and again.revision == first.revision
    assert repo.head() == first.revision
    assert repo.read("apps/pos/deploy.yaml") == b"image: pos:1\n"
    found = repo.find_trailer("Edgefleet-Rollout: 7")
    assert found is not None and found.revision == first.revision
    second = repo.write({"apps/pos/deploy.yaml": "image: pos:2\n"}, owned_prefix="apps/pos", message="2", author=ANN)
    reverted = repo.revert_to(first.revision or "", owned_prefix="apps/pos", message="Roll back", author=ANN)
    assert reverted.changed and reverted.previous == second.revision
    assert repo.read("apps/pos/deploy.yaml") == b"image: pos:1\n"


def test_another_writers_commit_is_kept_and_racing_writers_both_land(
    sim: Simulator, project_url: str, tmp_path: Path
) -> None:
    repo = _repo(sim, project_url, tmp_path / "cache")
    repo.write({"a.yaml": "a: 1\n"}, owned_prefix=None, message="first", author=ANN)

    # Someone pushes over HTTPS with plain git
    human = tmp_path / "human"
    _plain_git(sim, "clone", "-q", _with_token(sim, project_url), str(human))
    (human / "notes.txt").write_text("hello\n")
    _plain_git(sim, "add", "-A", cwd=human)
    _plain_git(sim, "-c", "user.name=Bob", "-c", "user.email=bob@example.com", "commit", "-qm", "hand", cwd=human)
    _plain_git(sim, "push", "-q", "origin", "HEAD:main", cwd=human)
    theirs = _plain_git(sim, "rev-parse", "HEAD", cwd=human)

    ours = repo.write({"a.yaml": "a: 2\n"}, owned_prefix=None, message="second", author=ANN)
    assert ours.previous == theirs and repo.read("notes.txt") == b"hello\n"

    # Two workers with their own clones write at once: pushes race, the loser fetches and pushes again
    results: list[Any] = []

    def write(index: int) -> None:
        other = _repo(sim, project_url, tmp_path / f"cache-{index}")
        for step in range(3):
            results.append(other.write({f"w{index}/{step}.yaml": "x\n"}, owned_prefix=None, message="w", author=ANN))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 6 and all(result.changed for result in results)
    for index in range(2):
        for step in range(3):
            assert repo.read(f"w{index}/{step}.yaml") == b"x\n"


def test_refusals_name_the_problem_and_never_the_token(sim: Simulator, project_url: str, tmp_path: Path) -> None:
    wrong = "glpat-wrong-token-value"
    with pytest.raises(RepoError) as refused:
        _repo(sim, project_url, tmp_path / "a", token=wrong).head()
    assert "the git server refused edgefleet's credentials" in str(refused.value)
    assert wrong not in str(refused.value)

    missing = project_url.replace(".git", "-missing.git")
    with pytest.raises(RepoError) as not_found:
        _repo(sim, missing, tmp_path / "b").head()
    assert "not found" in str(not_found.value)
    assert sim.gitlab_token not in str(not_found.value)

    # Without the token the write is refused: the project is private
    with pytest.raises(RepoError):
        _repo(sim, project_url, tmp_path / "c", token="").write(
            {"a.yaml": "a\n"}, owned_prefix=None, message="x", author=ANN
        )
