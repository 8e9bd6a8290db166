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

from simulator.testing import Simulator

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
