"""Onboarding and decommissioning a site end to end: the API's doors, a real Celery worker on a real Redis
with FLEET_GIT_HOST=gitlab pointed at the simulator's git host, the simulated site applying what it is
given, and everything read back with clients we did not write (python-gitlab, plain `git clone` over
HTTPS, the kubernetes client)."""

import base64
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from rest_framework.test import APIClient

from fleet.audit.models import AuditEvent
from fleet.workflows.choices import ACTIVE_STATES, RunState
from fleet.workflows.models import WorkflowRun
from fleet.workflows.tasks import workflow_sweep_task
from rollouts import services as rollout_services
from rollouts.choices import RolloutState, SiteRolloutState
from rollouts.models import Rollout, SiteRollout
from simulator.testing import Simulator, running_simulator
from sites import devices
from sites.base_stack import OWNED_PREFIX
from sites.choices import SiteState
from sites.clusters import SiteCluster
from sites.githost.base import MARKER_PATH
from sites.imports import fleet_import_file
from sites.models import NodeCredential, Site
from tests.rollouts.conftest import POS_BRIDGE_TEMPLATES
from tests.sites.test_lifecycle_support import FAST_SIM
from tests.support import wait_until
from tests.support.services import Worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    state_dir = tmp_path_factory.mktemp("onboard-e2e-sim")
    with running_simulator(sites=3, state_dir=state_dir, sync_interval=0.3, extra_args=FAST_SIM) as running:
        yield running


def gitlab_env(sim: Simulator) -> dict[str, str]:
    """FLEET_GIT_HOST=gitlab pointed at the simulator's git host, as .env.example documents it (the token
    host and FLEET_GIT_HOSTS follow from FLEET_GITLAB_URL, FLEET_GIT_TOKEN from FLEET_GITLAB_TOKEN)."""
    return {
        "FLEET_GIT_HOST": "gitlab",
        "FLEET_GITLAB_URL": sim.gitlab_url,
        "FLEET_GITLAB_TOKEN": sim.gitlab_token,
        "FLEET_GITLAB_GROUP": sim.git_group,
        "FLEET_GIT_CA_FILE": str(sim.ca_cert),
        "FLEET_KUBE_TIMEOUT": "3",
    }


@pytest.fixture(scope="module")
def gitlab_worker(sim: Simulator, celery_worker: Worker) -> Iterator[Worker]:
    """The session's worker, restarted with the git host's settings for this module, then as it was."""
    saved = dict(celery_worker.env)
    celery_worker.stop()
    celery_worker.env.update(gitlab_env(sim))
    celery_worker.start()
    yield celery_worker
    celery_worker.stop()
    celery_worker.env.clear()
    celery_worker.env.update(saved)
    celery_worker.start()


@pytest.fixture
def site(sim: Simulator, gitlab_worker: Worker, settings: Any) -> Site:
    settings.FLEET_ONBOARD_POLL_SECONDS = 0.3
    fleet_import_file(path=sim.state_dir / "fleet.json", actor="test", new_site_state=SiteState.PLANNED)
    return Site.objects.get(code=sim.codes[0])


def finished(run_id: int, seconds: float = 60) -> WorkflowRun:
    def ended() -> bool:
        return WorkflowRun.objects.get(pk=run_id).state not in ACTIVE_STATES

    try:
        wait_until(ended, seconds, f"run {run_id} ending", every=workflow_sweep_task)
    finally:
        run = WorkflowRun.objects.get(pk=run_id)
        steps = list(run.steps.order_by("id").values_list("step", "state", "message"))
        print(run.state, run.current_step, run.error, steps[-4:])  # noqa: T201  # for a failure's report
    return run


def git(*args: str, ca: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_SSL_CAINFO": str(ca)}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)


def with_credentials(url: str, user: str, password: str) -> str:
    return url.replace("https://", f"https://{user}:{password}@", 1)


def test_a_site_is_onboarded_end_to_end_and_decommissioned(
    sim: Simulator, site: Site, admin_api: APIClient, tmp_path: Path
) -> None:
    code = site.code
    # When support onboards the planned site through the API
    answer = admin_api.post(f"/api/v1/sites/{code}/onboard/", {}, format="json")
    assert answer.status_code == 202, answer.content
    assert answer.json()["kind"] == "site.onboard" and "first_boot" not in answer.json()  # its machines run already
    run = finished(answer.json()["id"])

    # Then the run succeeded step by step and the site is active
    assert run.state == RunState.SUCCEEDED, run.error
    steps = list(run.steps.filter(state="done").order_by("id").values_list("step", flat=True))
    assert steps == ["begin", "project", "base_stack", "first_boot", "point_edge", "await_applied", "activate"]
    site.refresh_from_db()
    assert site.state == SiteState.ACTIVE and site.repo_url == sim.git_url(code)

    # The project exists on the git host (python-gitlab reads it back): main protected, one deploy token of ours,
    # read-only, for this one project
    project = sim.gitlab().projects.get(f"{sim.git_group}/{code}")
    assert (project.http_url_to_repo, project.default_branch, project.archived) == (sim.git_url(code), "main", False)
    assert project.protectedbranches.get("main").allow_force_push is False
    tokens = project.deploytokens.list(get_all=True)
    assert [(t.name, t.scopes, t.revoked) for t in tokens] == [(f"edgefleet-edge-{code}", ["read_repository"], False)]

    # Its first commit holds the base stack (plain `git clone` over HTTPS with the control plane's token)
    clone = tmp_path / "clone"
    cloned = git(
        "clone", "-q", with_credentials(project.http_url_to_repo, "x", sim.gitlab_token), str(clone), ca=sim.ca_cert
    )
    assert cloned.returncode == 0, cloned.stderr
    history = git("log", "--format=%H %s", cwd=clone, ca=sim.ca_cert).stdout.splitlines()
    revision = run.context["base_stack"]["revision"]
    assert history == [f"{revision} Base stack 1.0.0 for site {code}"]
    assert code in (clone / MARKER_PATH).read_text()
    sync = (clone / OWNED_PREFIX / "flux-system/sync.yaml").read_text()
    assert f'url: "{sim.git_url(code)}"' in sync and 'name: "site-git"' in sync
    assert (clone / OWNED_PREFIX / "vector/config.yaml").exists() and (clone / OWNED_PREFIX / "kube-system").is_dir()

    # The simulated site applied it, reading the project with the deploy token in its Secret (not in git)
    with sim.api_client(code) as api:
        cluster = SiteCluster(api, site_code=code, timeout=10)
        status = cluster.sync_status()
        assert status is not None and status.applied(revision)
        source = cluster.git_source()
        assert source is not None and (source.url, source.secret_name, source.ready) == (
            sim.git_url(code),
            "site-git",
            True,
        )
        secret: Any = k8s.CoreV1Api(api).read_namespaced_secret("site-git", "flux-system")
        username, password = (base64.b64decode(secret.data[key]).decode() for key in ("username", "password"))
        assert secret.metadata.annotations["edgefleet.io/deploy-token-id"] == str(tokens[0].id)
        assert k8s.AppsV1Api(api).read_namespaced_daemon_set("vector", "edgefleet-system").metadata.name == "vector"
    assert password not in str(run.context) and password not in str(
        list(AuditEvent.objects.values_list("payload", flat=True))
    )

    # The deploy token clones this project and no other
    edge_url = with_credentials(project.http_url_to_repo, username, password)
    assert git("clone", "-q", edge_url, str(tmp_path / "edge"), ca=sim.ca_cert).returncode == 0
    group = sim.gitlab().groups.get(sim.git_group)
    other = sim.gitlab().projects.create({"name": f"{code}-other", "path": f"{code}-other", "namespace_id": group.id})
    other_url = with_credentials(other.http_url_to_repo, username, password)
    refused = git("ls-remote", other_url, ca=sim.ca_cert)
    assert refused.returncode != 0 and "not found" in refused.stderr

    # When the site is decommissioned through the API (a machine holds a credential)
    node = site.nodes.order_by("hostname").first()
    assert node is not None
    devices.node_credentials_issue(node=node, actor="test", source="test")
    decommission = admin_api.post(
        f"/api/v1/sites/{code}/decommission/", {"reason": "restaurant closed", "confirm": code}, format="json"
    )
    assert decommission.status_code == 202, decommission.content
    assert decommission.json()["kind"] == "site.decommission"
    ended = finished(decommission.json()["id"])

    # Then the project is archived (never deleted), the deploy token revoked: a clone with it fails
    assert ended.state == RunState.SUCCEEDED, ended.error
    site.refresh_from_db()
    assert site.state == SiteState.DECOMMISSIONED
    project = sim.gitlab().projects.get(project.id)
    assert project.archived is True
    assert [t.revoked for t in project.deploytokens.list(get_all=True)] == [True]
    gone = git("clone", "-q", edge_url, str(tmp_path / "gone"), ca=sim.ca_cert)
    assert gone.returncode != 0 and "Authentication failed" in gone.stderr
    assert not NodeCredential.objects.filter(node__site=site, revoked_at__isnull=True).exists()
    verbs = set(
        AuditEvent.objects.filter(object_type="sites.site", object_id=str(site.pk)).values_list("verb", flat=True)
    )
    assert {
        "onboard_request",
        "issue_deploy_token",
        "decommission_request",
        "revoke_deploy_tokens",
        "archive_project",
    } <= verbs


def test_a_rollout_reaches_every_onboarded_site_over_https(
    sim: Simulator, site: Site, admin_api: APIClient, tmp_path: Path
) -> None:
    """The production git path for a rollout: each site's repository is a project on the git host, written
    over HTTPS with the control plane's token, and what lands there is read back with plain git and the
    cluster's own client. (The first site was decommissioned by the test above: this one uses the others.)"""
    codes = sim.codes[1:]
    for code in codes:
        answer = admin_api.post(f"/api/v1/sites/{code}/onboard/", {}, format="json")
        assert answer.status_code == 202, answer.content
        assert finished(answer.json()["id"]).state == RunState.SUCCEEDED
    assert {s.repo_url for s in Site.objects.filter(code__in=codes)} == {sim.git_url(code) for code in codes}

    # When a release is rolled out to those sites in two waves
    application = rollout_services.application_create(
        actor="test", source="test", name="pos-bridge", team="payments", namespace="pos"
    )
    release = rollout_services.release_create(
        actor="test", source="test", application=application, version="2.0.0", templates=POS_BRIDGE_TEMPLATES
    )
    plan = rollout_services.rollout_plan_create(
        actor="test", source="test", name="over https", release=release, target={"sites": codes},
        waves=[{"name": "canary", "count": 1}, {"name": "rest", "percent": 100}],
        failure_threshold={"count": 0}, respect_windows=False,
    )  # fmt: skip
    rollout = rollout_services.rollout_start(plan=plan, actor="test", source="test")

    def ended() -> bool:
        return Rollout.objects.get(pk=rollout.pk).state in {RolloutState.SUCCEEDED, RolloutState.HALTED}

    wait_until(ended, 90, "the rollout over HTTPS ending", every=workflow_sweep_task)

    # Then it succeeded, and each project's main holds exactly one more commit: the release, as the site applied it
    assert Rollout.objects.get(pk=rollout.pk).state == RolloutState.SUCCEEDED
    rows = {row.site.code: row for row in SiteRollout.objects.filter(rollout=rollout).select_related("site")}
    assert {code: row.state for code, row in rows.items()} == dict.fromkeys(codes, SiteRolloutState.SUCCEEDED)
    for code in codes:
        clone = tmp_path / code
        url = with_credentials(sim.git_url(code), "x", sim.gitlab_token)
        assert git("clone", "-q", url, str(clone), ca=sim.ca_cert).returncode == 0
        history = git("log", "--format=%H %s", cwd=clone, ca=sim.ca_cert).stdout.splitlines()
        assert len(history) == 2 and history[0].split()[0] == rows[code].revision  # base stack, then the release
        assert f'site: "{code}"' in (clone / "apps/pos-bridge/configmap.yaml").read_text()
        with sim.api_client(code) as api:
            status = SiteCluster(api, site_code=code, timeout=10).sync_status()
            assert status is not None and status.applied(rows[code].revision)
            config: Any = k8s.CoreV1Api(api).read_namespaced_config_map("pos-bridge-config", "pos")
            assert config.data["version"] == "2.0.0"
