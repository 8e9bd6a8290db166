"""The simulator's git host, exercised with clients we did not write: python-gitlab for the REST API, and
real git for clone, fetch and push over HTTPS (smart HTTP through git http-backend).

These tests use projects of their own (`gh-...`), never a site's, except the one that shows a push over
HTTPS reaching a site's GitOps agent.
"""

import base64
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import gitlab
import pytest
import requests

from simulator.githost.paths import path_problem
from simulator.testing import Simulator, running_simulator
from tests.simulator.conftest import SPARE_SITE
from tests.support import wait_until

pytestmark = pytest.mark.integration


def _name(prefix: str = "gh") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _project(sim: Simulator, path: str | None = None, gl: Any = None) -> Any:
    gl = gl or sim.gitlab()
    group = gl.groups.get(sim.git_group)
    path = path or _name()
    return gl.projects.create({"name": path, "path": path, "namespace_id": group.id, "default_branch": "main"})


def _git(sim: Simulator, *args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_SSL_CAINFO": str(sim.ca_cert),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done


def _with_credentials(url: str, user: str, password: str) -> str:
    return url.replace("https://", f"https://{user}:{password}@", 1)


def _commit(sim: Simulator, clone: Path, name: str, content: str) -> str:
    (clone / name).write_text(content)
    _git(sim, "add", "-A", cwd=clone)
    _git(sim, "commit", "-qm", f"add {name}", cwd=clone)
    return _git(sim, "rev-parse", "HEAD", cwd=clone).stdout.strip()


# --- the REST API through python-gitlab -----------------------------------------------------------------


def test_python_gitlab_creates_reads_and_archives_a_project(sim: Simulator) -> None:
    gl = sim.gitlab()
    gl.auth()
    assert gl.user is not None and gl.user.username == "root"
    group = gl.groups.get(sim.git_group)

    path = _name()
    created = gl.projects.create(
        {"name": path, "path": path, "namespace_id": group.id, "default_branch": "main", "description": "x"}
    )

    # Read back by its URL-encoded path, in another case (GitLab routes are case-insensitive), and by id.
    by_path = gl.projects.get(f"{sim.git_group.upper()}/{path.upper()}")
    assert by_path.id == created.id
    assert by_path.path_with_namespace == f"{sim.git_group}/{path}"
    assert by_path.http_url_to_repo == f"{sim.gitlab_url}/{sim.git_group}/{path}.git"
    assert by_path.empty_repo is True and by_path.archived is False and by_path.default_branch == "main"
    # The default branch is protected from force pushes from the start, as GitLab's default protection does.
    branch = by_path.protectedbranches.get("main")
    assert branch.allow_force_push is False
    assert branch.push_access_levels[0]["access_level"] == 40

    by_path.archive()
    assert gl.projects.get(created.id).archived is True


def test_errors_have_gitlabs_status_codes_and_bodies(sim: Simulator) -> None:
    gl = sim.gitlab()
    project = _project(sim, gl=gl)

    with pytest.raises(gitlab.GitlabGetError) as missing:
        gl.projects.get(f"{sim.git_group}/no-such-project")
    assert missing.value.response_code == 404
    assert missing.value.error_message == "404 Project Not Found"

    with pytest.raises(gitlab.GitlabGetError) as no_group:
        gl.groups.get("no-such-group")
    assert no_group.value.error_message == "404 Group Not Found"

    with pytest.raises(gitlab.GitlabCreateError) as taken:
        _project(sim, path=project.path, gl=gl)
    assert taken.value.response_code == 400
    said: Any = taken.value.error_message  # GitLab's per-field messages: a dict, not a string
    assert said["path"] == ["has already been taken"]

    with pytest.raises(gitlab.GitlabCreateError) as bad_path:
        _project(sim, path="ends-with.git", gl=gl)
    assert bad_path.value.response_code == 400
    said = bad_path.value.error_message
    assert "end in '.git'" in said["path"][0]

    with pytest.raises(gitlab.GitlabCreateError) as exists:
        project.protectedbranches.create({"name": "main"})
    assert exists.value.response_code == 409


@pytest.mark.parametrize(
    ("token", "status", "body"),
    [
        ({"name": "expired", "expires_at": "2020-01-01"}, 401, "Token is expired"),
        ({"name": "revoked", "revoked": True}, 401, "Token was revoked"),
    ],
)
def test_unusable_tokens_get_gitlabs_401_bodies(sim: Simulator, token: dict[str, Any], status: int, body: str) -> None:
    value = sim.create_git_token(**token)["token"]
    answer = requests.get(
        f"{sim.gitlab_url}/api/v4/projects", headers={"PRIVATE-TOKEN": value}, verify=str(sim.ca_cert), timeout=10
    )
    assert answer.status_code == status
    assert answer.json()["error"] == "invalid_token"
    assert body in answer.json()["error_description"]
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")

    with pytest.raises(gitlab.GitlabAuthenticationError):
        sim.gitlab(token=value).projects.list(get_all=False)
    headers = {"PRIVATE-TOKEN": "glpat-nope"}
    unknown = requests.get(f"{sim.gitlab_url}/api/v4/projects", headers=headers, verify=str(sim.ca_cert), timeout=10)
    assert (unknown.status_code, unknown.json()) == (401, {"message": "401 Unauthorized"})


def test_scopes_roles_and_project_tokens_are_enforced(sim: Simulator) -> None:
    reader = sim.gitlab(token=sim.create_git_token(scopes=["read_api"])["token"])
    group = reader.groups.get(sim.git_group)
    with pytest.raises(gitlab.GitlabCreateError) as scope:
        reader.projects.create({"name": "nope", "path": "nope", "namespace_id": group.id})
    assert scope.value.response_code == 403
    assert scope.value.error_message == "insufficient_scope"

    mine, other = _project(sim), _project(sim)
    developer = sim.gitlab(token=sim.create_git_token(access_level=30)["token"])
    with pytest.raises(gitlab.GitlabCreateError) as role:
        developer.projects.get(mine.id).archive()
    assert role.value.response_code == 403

    bot = sim.gitlab(token=sim.create_git_token(project=mine.id, access_level=40)["token"])
    assert bot.projects.get(mine.id).id == mine.id
    with pytest.raises(gitlab.GitlabGetError) as hidden:
        bot.projects.get(other.id)
    assert hidden.value.response_code == 404


def test_deploy_tokens_are_created_listed_and_revoked(sim: Simulator) -> None:
    project = _project(sim)
    created = project.deploytokens.create({"name": "edge", "scopes": ["read_repository"], "expires_at": "2099-01-01"})
    assert created.token.startswith("gldt-")
    assert created.username == f"gitlab+deploy-token-{created.id}"

    listed = project.deploytokens.list(get_all=True)
    assert [(t.id, t.name, t.revoked, t.scopes) for t in listed] == [(created.id, "edge", False, ["read_repository"])]
    assert not hasattr(listed[0], "token")  # the secret is shown once

    project.deploytokens.delete(created.id)
    assert project.deploytokens.get(created.id).revoked is True
    assert project.deploytokens.list(get_all=True, active=True) == []


def test_lists_are_paginated_as_gitlab_does(sim: Simulator) -> None:
    project = _project(sim)
    for index in range(5):
        project.deploytokens.create({"name": f"t{index}", "scopes": ["read_repository"]})

    page = project.deploytokens.list(per_page=2, page=2, get_all=False)
    assert [t.name for t in page] == ["t2", "t3"]
    walked = project.deploytokens.list(per_page=2, iterator=True)
    assert (walked.total, walked.total_pages, walked.per_page) == (5, 3, 2)
    assert [t.name for t in walked] == ["t0", "t1", "t2", "t3", "t4"]  # python-gitlab followed the Link headers

    answer = requests.get(
        f"{sim.gitlab_url}/api/v4/projects/{project.id}/deploy_tokens?per_page=2&page=2",
        headers={"PRIVATE-TOKEN": sim.gitlab_token},
        verify=str(sim.ca_cert),
        timeout=10,
    )
    assert answer.headers["X-Next-Page"] == "3" and answer.headers["X-Prev-Page"] == "1"
    assert 'rel="next"' in answer.headers["Link"] and 'rel="last"' in answer.headers["Link"]


def test_repository_files_api_commits_and_reads_a_file(sim: Simulator) -> None:
    project = _project(sim)
    project.files.create({"file_path": "dir/a.txt", "branch": "main", "content": "hello\n", "commit_message": "first"})
    fetched = project.files.get("dir/a.txt", ref="main")
    assert base64.b64decode(fetched.content) == b"hello\n"
    assert sim.gitlab().projects.get(project.id).empty_repo is False
    with pytest.raises(gitlab.GitlabCreateError):
        project.files.create({"file_path": "dir/a.txt", "branch": "main", "content": "x", "commit_message": "again"})
    with pytest.raises(gitlab.GitlabGetError) as missing:
        project.files.get("nope.txt", ref="main")
    assert missing.value.error_message == "404 File Not Found"


def test_python_gitlab_retries_through_throttling_and_server_errors(sim: Simulator) -> None:
    project = _project(sim)
    gl = sim.gitlab(retry_transient_errors=True)

    # Each phase alone: python-gitlab's backoff grows with every retry of one call, and a streak of
    # both kinds of failure would make the test slow rather than show anything more.
    throttle = sim.add_fault("throttle", site="githost", rate=0.4, seconds=0)  # Retry-After: 0
    for _ in range(4):  # every call eventually answers: python-gitlab retried the 429s
        assert gl.projects.get(project.id).id == project.id
    sim.remove_fault(throttle)
    sim.add_fault("api_error", site="githost", rate=0.3)
    for _ in range(3):  # and the 5xx, with its backoff
        assert gl.projects.get(project.id).id == project.id
    sim.clear_faults()

    sim.add_fault("api_error", site="githost", rate=1.0)
    with pytest.raises(gitlab.GitlabGetError) as failed:
        gl.projects.get(project.id, max_retries=1)
    assert failed.value.response_code in (500, 502, 503)


def test_faults_aimed_at_the_git_host_leave_the_sites_alone(sim: Simulator) -> None:
    sim.add_fault("offline", site="githost")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{sim.gitlab_url}/api/v4/version", verify=str(sim.ca_cert), timeout=5)
    site = sim.codes[0]
    from kubernetes import client as k8s

    with sim.api_client(site) as api:
        assert k8s.VersionApi(api).get_code().git_version.startswith("v1.")
    status, body = sim.request("POST", "/_sim/faults", {"site": "githost", "kind": "sync_failure"})
    assert status == 400 and "git host takes the fault kinds" in body["detail"]


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
