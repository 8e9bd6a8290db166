"""The simulator's git host over HTTPS with plain git: clone and push with an access token, a deploy token that only
reads its project, credentials asked for, archived projects read-only, a push reaching the site's GitOps agent,
and state that survives a restart."""

from pathlib import Path
from typing import Any

import gitlab
import pytest
import requests

from simulator.githost.paths import path_problem
from simulator.testing import Simulator, running_simulator
from tests.simulator.conftest import SPARE_SITE
from tests.simulator.test_githost import _commit, _git, _project, _with_credentials
from tests.support import wait_until

pytestmark = pytest.mark.integration


# --- git over HTTPS ----------------------------------------------------------------------------------


def test_git_clones_and_pushes_with_an_access_token(sim: Simulator, tmp_path: Path) -> None:
    project = _project(sim)
    url = _with_credentials(project.http_url_to_repo, "edgefleet", sim.gitlab_token)
    clone = tmp_path / "clone"
    _git(sim, "clone", "-q", url, str(clone))  # an empty repository
    first = _commit(sim, clone, "a.txt", "a\n")
    _git(sim, "push", "-q", "origin", "HEAD:main", cwd=clone)
    # Enough history that git gzips its fetch negotiation: the body arrives decompressed at http-backend.
    for index in range(30):
        _commit(sim, clone, f"f{index}.txt", f"{index}\n")
    _git(sim, "push", "-q", "origin", "HEAD:main", cwd=clone)
    again = tmp_path / "again"
    _git(sim, "clone", "-q", url, str(again))
    assert _git(sim, "rev-parse", "HEAD~30", cwd=again).stdout.strip() == first
    _commit(sim, clone, "later.txt", "x\n")
    _git(sim, "push", "-q", "origin", "HEAD:main", cwd=clone)
    _git(sim, "fetch", "-q", "origin", cwd=again)

    # main is protected: no force push, no deletion, even with a maintainer's token.
    _git(sim, "reset", "-q", "--hard", "HEAD~1", cwd=clone)
    _commit(sim, clone, "other.txt", "y\n")
    forced = _git(sim, "push", "-f", "origin", "HEAD:main", cwd=clone, check=False)
    assert forced.returncode != 0 and "non-fast-forward" in forced.stderr
    deleted = _git(sim, "push", "origin", ":main", cwd=clone, check=False)
    assert deleted.returncode != 0


def test_a_deploy_token_reads_its_one_project_and_never_writes(sim: Simulator, tmp_path: Path) -> None:
    mine, other = _project(sim), _project(sim)
    mine.files.create({"file_path": "a.txt", "branch": "main", "content": "a", "commit_message": "a"})
    other.files.create({"file_path": "b.txt", "branch": "main", "content": "b", "commit_message": "b"})
    token = mine.deploytokens.create({"name": "edge", "scopes": ["read_repository"]})

    clone = tmp_path / "mine"
    _git(sim, "clone", "-q", _with_credentials(mine.http_url_to_repo, token.username, token.token), str(clone))
    assert (clone / "a.txt").read_text() == "a"

    other_url = _with_credentials(other.http_url_to_repo, token.username, token.token)
    elsewhere = _git(sim, "ls-remote", other_url, check=False)
    assert elsewhere.returncode != 0 and "not found" in elsewhere.stderr

    _commit(sim, clone, "b.txt", "b\n")
    pushed = _git(sim, "push", "origin", "HEAD:refs/heads/edge", cwd=clone, check=False)
    assert pushed.returncode != 0 and "403" in pushed.stderr

    wrong_user = _git(sim, "ls-remote", _with_credentials(mine.http_url_to_repo, "someone", token.token), check=False)
    assert wrong_user.returncode != 0

    mine.deploytokens.delete(token.id)
    revoked = _git(sim, "ls-remote", _with_credentials(mine.http_url_to_repo, token.username, token.token), check=False)
    assert revoked.returncode != 0 and "Authentication failed" in revoked.stderr


def test_git_without_credentials_is_asked_for_them(sim: Simulator) -> None:
    project = _project(sim)
    anonymous = _git(sim, "ls-remote", project.http_url_to_repo, check=False)
    assert anonymous.returncode != 0 and "could not read Username" in anonymous.stderr
    answer = requests.get(
        f"{project.http_url_to_repo}/info/refs?service=git-upload-pack", verify=str(sim.ca_cert), timeout=10
    )
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == 'Basic realm="GitLab"'


def test_an_archived_project_is_read_only(sim: Simulator, tmp_path: Path) -> None:
    project = _project(sim)
    project.files.create({"file_path": "a.txt", "branch": "main", "content": "a", "commit_message": "a"})
    url = _with_credentials(project.http_url_to_repo, "edgefleet", sim.gitlab_token)
    clone = tmp_path / "clone"
    _git(sim, "clone", "-q", url, str(clone))
    project.archive()

    _commit(sim, clone, "b.txt", "b\n")
    pushed = _git(sim, "push", "origin", "HEAD:main", cwd=clone, check=False)
    assert pushed.returncode != 0 and "archived" in pushed.stderr
    _git(sim, "fetch", "-q", "origin", cwd=clone)  # reading still works


def test_a_push_over_https_reaches_the_sites_gitops_agent(sim: Simulator, tmp_path: Path) -> None:
    code = sim.codes[SPARE_SITE]
    project = _project(sim, path=code)
    assert Path(sim.git_host_summary()["projects"][-1]["repository"]) == sim.repo_path(code)

    clone = tmp_path / "clone"
    _git(sim, "clone", "-q", _with_credentials(project.http_url_to_repo, "edgefleet", sim.gitlab_token), str(clone))
    sha = _commit(sim, clone, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: via-https}\ndata: {a: b}\n")
    _git(sim, "push", "-q", "origin", "HEAD:main", cwd=clone)

    def applied() -> bool:
        return sim.summary(code)["sync"]["applied"] == sha

    wait_until(applied, timeout=20, what="the agent applying the commit pushed over HTTPS")


def test_path_rules_refuse_what_gitlab_refuses() -> None:
    assert path_problem("TX-0412") is None
    for bad in ("", "-x", "x.git", "x.atom", "a b", "x/y", "a..b", "_x", "x-", "tree", "a" * 256):
        assert path_problem(bad), bad


def test_projects_and_tokens_survive_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "sim"
    with running_simulator(sites=1, state_dir=state) as first:
        token = first.gitlab_token
        made = _project(first, path="kept")
    with running_simulator(sites=1, state_dir=state) as second:
        assert second.gitlab_token == token
        assert second.gitlab().projects.get(f"{second.git_group}/kept").id == made.id


def test_the_agent_follows_its_gitrepository_to_the_git_host(sim: Simulator, tmp_path: Path) -> None:
    from kubernetes import client as k8s

    code = sim.codes[SPARE_SITE]
    gl = sim.gitlab()
    try:
        project = gl.projects.get(f"{sim.git_group}/{code}")
    except gitlab.GitlabGetError:
        project = _project(sim, path=code, gl=gl)
    other = _project(sim, gl=gl)
    wrong = other.deploytokens.create({"name": "edge", "scopes": ["read_repository"]})
    right = project.deploytokens.create({"name": "edge", "scopes": ["read_repository"]})

    with sim.api_client(code) as api:
        core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
        flux = ("source.toolkit.fluxcd.io", "v1", "flux-system", "gitrepositories", "site")

        def source_says(words: str) -> bool:
            conditions = custom.get_namespaced_custom_object(*flux).get("status", {}).get("conditions") or []
            return bool(conditions) and words in conditions[0]["message"]

        def secret(token: Any) -> dict[str, Any]:
            return {
                "metadata": {"name": "site-git"},
                "stringData": {"username": token.username, "password": token.token},
            }

        # Another project's deploy token: the source-controller cannot see the project
        core.create_namespaced_secret("flux-system", secret(wrong))
        patch = {"spec": {"url": project.http_url_to_repo, "secretRef": {"name": "site-git"}}}
        custom.patch_namespaced_custom_object(*flux, patch)
        wait_until(lambda: source_says("repository not found"), timeout=20, what="the source refusing the wrong token")

        # Its own deploy token: a commit pushed over HTTPS is applied
        core.replace_namespaced_secret("site-git", "flux-system", secret(right))
        clone = tmp_path / "clone"
        _git(sim, "clone", "-q", _with_credentials(project.http_url_to_repo, "edgefleet", sim.gitlab_token), str(clone))
        sha = _commit(sim, clone, "follow.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: follow}\n")
        _git(sim, "push", "-q", "origin", "HEAD:main", cwd=clone)
        wait_until(lambda: sim.summary(code)["sync"]["applied"] == sha, timeout=20, what="the commit applied")

        # The git host down: the fetch fails, and comes back with it
        fault = sim.add_fault("offline", site="githost")
        wait_until(lambda: source_says("connection refused"), timeout=20, what="the source reporting the host down")
        sim.remove_fault(fault)
        wait_until(lambda: source_says("stored artifact"), timeout=20, what="the source recovering")

        # A file:// URL outside the simulator's state directory is not followed
        custom.patch_namespaced_custom_object(*flux, {"spec": {"url": "file:///etc", "secretRef": None}})
        wait_until(lambda: source_says("outside the simulator's state directory"), timeout=20, what="a refused path")
        custom.patch_namespaced_custom_object(*flux, {"spec": {"url": sim.site(code)["repo_url"]}})
        wait_until(lambda: source_says("stored artifact"), timeout=20, what="the site's own repository again")
