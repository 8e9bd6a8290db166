"""The git host adapter against the simulator's git host (FLEET_GIT_HOST=gitlab pointed at it): what the
onboarding and decommissioning workflows will call, checked with clients we did not write (python-gitlab
to read back, plain git to clone) and with the site's simulated GitOps agent. Its refusals and faults are
test_gitlab_errors.py.
"""

import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from simulator.testing import Simulator, running_simulator
from sites.clusters import SiteCluster
from sites.githost import GitHostRefused, ProjectConflict, ProjectMissing, git_host
from sites.githost.base import MARKER_PATH, marker_content
from sites.githost.gitlab import GitLabHost
from sites.repos import Author, RepoError, SiteRepo
from tests.sites.githost.support import git, gitlab_host, unused_code, with_credentials
from tests.support import wait_until

pytestmark = pytest.mark.integration


BASE_STACK = {
    "kustomization.yaml": "resources:\n  - base/edge-config.yaml\n",
    "base/edge-config.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: edge-config\n  namespace: kube-system\n"
        "data:\n  site: '{code}'\n"
    ),
}


# --- the done-means: onboarding's pieces, end to end -------------------------------------------------------


def test_project_first_commit_over_https_edge_applies_then_archive_and_revoke(
    sim: Simulator, gitlab_settings: Any, tmp_path: Path
) -> None:
    # Given a simulated site and FLEET_GIT_HOST=gitlab pointed at the simulator's git host
    code = sim.codes[0]
    host = git_host()
    assert isinstance(host, GitLabHost)

    # When the adapter ensures the site's project
    project = host.ensure_project(code)

    # Then python-gitlab reads it back: in the group, main the default branch, protected, marked ours
    gl = sim.gitlab()
    read = gl.projects.get(f"{sim.git_group}/{code}")
    assert (read.id, read.http_url_to_repo, read.default_branch) == (project.id, project.clone_url, "main")
    assert read.protectedbranches.get("main").allow_force_push is False
    assert code in read.files.raw(MARKER_PATH, ref="main").decode()
    assert project.changes == ("created", "marked")

    # When SiteRepo pushes the base stack over HTTPS with the control plane's token (and the simulator's CA)
    repo = SiteRepo.from_settings(code, project.clone_url)
    assert repo.location.transport == "https"
    files = {path: text.format(code=code) for path, text in BASE_STACK.items()}
    written = repo.write(files, owned_prefix="base", message="Base stack", author=Author.of("onboarding"))
    assert written.changed and written.revision

    # Then a plain `git clone` over HTTPS sees that commit
    clone = tmp_path / "clone"
    cloned = git(
        "clone", "-q", with_credentials(project.clone_url, "edgefleet", sim.gitlab_token), str(clone), ca=sim.ca_cert
    )
    assert cloned.returncode == 0, cloned.stderr
    assert git("rev-parse", "HEAD", cwd=clone).stdout.strip() == written.revision
    assert (clone / "base/edge-config.yaml").read_text() == files["base/edge-config.yaml"]

    # And the site's GitOps agent applies it: the Flux Kustomization is Ready at that commit
    with sim.api_client(code) as api:
        cluster = SiteCluster(api, site_code=code, timeout=10)

        def applied() -> bool:
            status = cluster.sync_status()
            return status is not None and status.applied(written.revision or "")

        wait_until(applied, 30, "the Kustomization Ready at the base stack's commit")
        config_map = k8s.CoreV1Api(api).read_namespaced_config_map("edge-config", "kube-system")
        assert config_map.data == {"site": code}

    # A deploy token: it clones this project, not another one, and cannot push
    token = host.issue_deploy_token(code)
    assert token is not None and "token=" not in repr(token)
    edge = tmp_path / "edge"
    edge_url = with_credentials(project.clone_url, token.username, token.token)
    assert git("clone", "-q", edge_url, str(edge), ca=sim.ca_cert).returncode == 0
    other = host.ensure_project(unused_code())
    refused = git("ls-remote", with_credentials(other.clone_url, token.username, token.token), ca=sim.ca_cert)
    assert refused.returncode != 0 and "not found" in refused.stderr
    (edge / "x.txt").write_text("x")
    git("add", "x.txt", cwd=edge)
    git("-c", "user.name=e", "-c", "user.email=e@e.invalid", "commit", "-qm", "x", cwd=edge)
    pushed = git("push", "origin", "HEAD:main", cwd=edge, ca=sim.ca_cert)
    assert pushed.returncode != 0 and "403" in pushed.stderr

    # The edge pulls from the git host with it, as Flux does: GitRepository url + a basic-auth Secret
    with sim.api_client(code) as api:
        cluster = SiteCluster(api, site_code=code, timeout=10)
        _point_edge_at(api, project.clone_url, token.username, token.token)
        second = repo.write(
            {"base/extra.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra, namespace: kube-system}\n"},
            owned_prefix=None,
            message="More",
            author=Author.of("onboarding"),
        )
        wait_until(lambda: _applied(cluster, second.revision), 30, "the commit read through the git host applied")

        # When the site is decommissioned: its deploy tokens revoked, then its project archived
        assert host.revoke_deploy_tokens(code) == [token.id]

        # Then the edge's fetch is refused (the last applied revision stays) and a new commit is not applied
        def source_refused() -> bool:
            source: Any = k8s.CustomObjectsApi(api).get_namespaced_custom_object(
                "source.toolkit.fluxcd.io", "v1", "flux-system", "gitrepositories", "site"
            )
            ready = source["status"]["conditions"][0]
            return ready["status"] == "False" and "authentication required" in ready["message"]

        wait_until(source_refused, 30, "the GitRepository reporting the revoked credentials")
        third = repo.write({"base/late.yaml": "a: b\n"}, owned_prefix=None, message="late", author=Author.of("x"))
        refusals = sim.summary(code)["sync"]["source_refusals"]
        wait_until(
            lambda: sim.summary(code)["sync"]["source_refusals"] > refusals,
            30,
            "the edge trying its source again after the new commit, and being refused",
        )
        assert not _applied(cluster, third.revision)
        assert _applied(cluster, second.revision)

    archived = host.archive_project(code)

    # And the old deploy token clones nothing, the project is read-only, and both calls are idempotent
    assert archived is not None and archived.archived
    gone = git("clone", "-q", edge_url, str(tmp_path / "gone"), ca=sim.ca_cert)
    assert gone.returncode != 0 and "Authentication failed" in gone.stderr
    with pytest.raises(RepoError, match="archived"):
        repo.write({"base/more.yaml": "a: b\n"}, owned_prefix=None, message="later", author=Author.of("x"))
    assert host.archive_project(code).archived  # type: ignore[union-attr]
    assert host.revoke_deploy_tokens(code) == []
    with pytest.raises(ProjectConflict, match="archived"):
        host.ensure_project(code)


def _applied(cluster: SiteCluster, sha: str | None) -> bool:
    status = cluster.sync_status()
    return status is not None and bool(sha) and status.applied(sha or "")


def _point_edge_at(api: Any, url: str, username: str, password: str) -> None:
    """What onboarding will do at the edge: Flux's GitRepository `site` pulls `url` with these credentials."""
    core = k8s.CoreV1Api(api)
    core.create_namespaced_secret(
        "flux-system",
        {"metadata": {"name": "site-git"}, "stringData": {"username": username, "password": password}},
    )
    k8s.CustomObjectsApi(api).patch_namespaced_custom_object(
        "source.toolkit.fluxcd.io",
        "v1",
        "flux-system",
        "gitrepositories",
        "site",
        {"spec": {"url": url, "secretRef": {"name": "site-git"}}},
    )


def test_https_without_the_ca_fails_on_the_certificate(sim: Simulator, gitlab_settings: Any) -> None:
    code = unused_code()
    project = gitlab_host(sim).ensure_project(code)
    gitlab_settings.FLEET_GIT_CA_FILE = ""

    with pytest.raises(RepoError, match="certificate"):
        SiteRepo.from_settings(code, project.clone_url).head()
    with pytest.raises(GitHostRefused, match="cannot verify the certificate"):
        gitlab_host(sim, ca_file="").find_project(code)


# --- idempotence, adoption, conflicts -------------------------------------------------------------------


def test_ensure_continues_where_it_stopped(sim: Simulator) -> None:
    # Given a project someone created by hand (empty) and left unprotected, as a crash mid-ensure would
    code = unused_code()
    gl = sim.gitlab()
    group = gl.groups.get(sim.git_group)
    made = gl.projects.create({"name": code, "path": code, "namespace_id": group.id, "default_branch": "main"})
    branch = made.protectedbranches.get("main")
    branch.allow_force_push = True
    branch.save()
    host = gitlab_host(sim)

    # When ensure runs, then again
    first = host.ensure_project(code)
    second = host.ensure_project(code)

    # Then the first adopted, marked and protected it; the second found nothing to do
    assert first.changes == ("adopted", "protected")
    assert second.changes == ()
    assert gl.projects.get(made.id).protectedbranches.get("main").allow_force_push is False
    assert first.id == made.id == second.id


def test_a_project_with_content_that_is_not_ours_is_refused(sim: Simulator, tmp_path: Path) -> None:
    gl = sim.gitlab()
    group = gl.groups.get(sim.git_group)
    host = gitlab_host(sim)

    foreign = unused_code()
    project = gl.projects.create({"name": foreign, "path": foreign, "namespace_id": group.id})
    project.files.create({"file_path": "README.md", "branch": "main", "content": "mine", "commit_message": "x"})
    with pytest.raises(ProjectConflict) as refused:
        host.ensure_project(foreign)
    assert f"{sim.git_group}/{foreign}" in refused.value.message
    assert "did not write" in refused.value.message and MARKER_PATH in refused.value.message
    with pytest.raises(ProjectConflict):
        host.archive_project(foreign)
    assert gl.projects.get(project.id).archived is False

    theirs = unused_code()
    other = gl.projects.create({"name": theirs, "path": theirs, "namespace_id": group.id})
    content = marker_content("AB-123456")
    other.files.create({"file_path": MARKER_PATH, "branch": "main", "content": content, "commit_message": "x"})
    with pytest.raises(ProjectConflict, match="belongs to site AB-123456"):
        host.ensure_project(theirs)

    # A project carrying our marker for this very site (moved there by hand) is adopted.
    moved = unused_code()
    ours = gl.projects.create({"name": moved, "path": moved, "namespace_id": group.id})
    ours.files.create(
        {"file_path": MARKER_PATH, "branch": "main", "content": marker_content(moved), "commit_message": "x"}
    )
    assert host.ensure_project(moved).changes == ()


# --- deploy tokens --------------------------------------------------------------------------------------


def test_deploy_tokens_rotate_without_leaving_the_edge_without_one(sim: Simulator) -> None:
    code = unused_code()
    host = gitlab_host(sim)
    with pytest.raises(ProjectMissing, match=code):
        host.issue_deploy_token(code)
    assert host.revoke_deploy_tokens(code) == []
    host.ensure_project(code)
    by_hand = (
        sim.gitlab()
        .projects.get(f"{sim.git_group}/{code}")
        .deploytokens.create({"name": "someone-elses", "scopes": ["read_repository"]})
    )

    old = host.issue_deploy_token(code)
    expires = datetime.datetime(2099, 1, 1, tzinfo=datetime.UTC)
    new = host.issue_deploy_token(code, expires_at=expires)
    assert old is not None and new is not None
    assert new.expires_at == expires

    assert host.revoke_deploy_tokens(code, keep=new.id) == [old.id]
    state = {t.id: t.active for t in host.deploy_tokens(code)}
    assert state == {by_hand.id: True, old.id: False, new.id: True}  # a token we did not make is left alone


def test_a_second_simulator_run_reads_the_same_projects(tmp_path: Path) -> None:
    with running_simulator(sites=1, state_dir=tmp_path / "sim") as first:
        code = first.codes[0]
        gitlab_host(first).ensure_project(code)
    with running_simulator(sites=1, state_dir=tmp_path / "sim") as second:
        assert gitlab_host(second).ensure_project(code).changes == ()
