"""`site.onboard` step by step against a real simulator, advanced by the engine in this process: the
embedded set-up's path (`fleet_import --onboard` through the local git host, as `make dev` does), and the
git host's refusals and faults (FLEET_GIT_HOST=gitlab pointed at the simulator's git host), each reaching
the run's timeline as a sentence, with nothing half-created and a retry going on from where it stopped.
The whole path with a real worker, deploy token and decommission is tests/sites/test_onboard_e2e.py."""

import io
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gitlab.exceptions
import pytest
from django.core.management import call_command
from django.db.models.functions import Now
from django.utils import timezone
from kubernetes import client as k8s

from fleet.audit.models import AuditEvent
from fleet.workflows import dispatch, engine, retry
from fleet.workflows.choices import TERMINAL_STATES, RunState
from fleet.workflows.models import WorkflowRun
from rollouts import base_stack
from rollouts.choices import DriftState
from rollouts.drift import drift_check_site
from rollouts.models import Rollout
from rollouts.services import rollout_plan_create, rollout_start
from simulator.testing import Simulator, running_simulator
from sites import services, site_lifecycle
from sites.base_stack import OWNED_PREFIX
from sites.choices import NodeState, SiteState
from sites.githost import _git_host
from sites.githost.base import MARKER_PATH
from sites.imports import fleet_import_file
from sites.models import Node, Site
from sites.repos import Author, SiteRepo
from sites.workflows import site_common
from tests.sites.test_lifecycle_support import FAST_SIM
from tests.support import wait_until

pytestmark = pytest.mark.integration

STEPS = ["begin", "project", "base_stack", "first_boot", "point_edge", "await_applied", "activate"]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    state_dir = tmp_path_factory.mktemp("onboard-sim")
    with running_simulator(sites=2, state_dir=state_dir, sync_interval=0.3, extra_args=FAST_SIM) as running:
        yield running


@pytest.fixture
def quiet(db: None, settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """No wake-up messages (this process advances the runs), short polls, a private working-clone cache."""
    monkeypatch.setattr(dispatch, "enqueue_advance", lambda *args, **kwargs: True)
    settings.FLEET_ONBOARD_POLL_SECONDS = 0.2
    settings.KUBE_TIMEOUT_SECONDS = 3.0
    settings.REPO_CACHE_DIR = tmp_path / "repo-cache"
    _git_host.cache_clear()
    yield settings
    _git_host.cache_clear()


@pytest.fixture
def local_host(sim: Simulator, quiet: Any) -> Any:
    """FLEET_GIT_HOST=local over the simulator's repositories, as `make dev` sets FLEET_REPO_ROOT."""
    quiet.FLEET_GIT_HOST = "local"
    quiet.REPO_ROOT = sim.state_dir / "repos"
    return quiet


@pytest.fixture
def gitlab_host(sim: Simulator, quiet: Any) -> Any:
    """FLEET_GIT_HOST=gitlab pointed at the simulator's git host, as .env.example documents it."""
    netloc = urlsplit(sim.gitlab_url).netloc
    quiet.FLEET_GIT_HOST = "gitlab"
    quiet.FLEET_GITLAB_URL = sim.gitlab_url
    quiet.FLEET_GITLAB_TOKEN = sim.gitlab_token
    quiet.FLEET_GITLAB_GROUP = sim.git_group
    quiet.FLEET_GIT_CA_FILE = str(sim.ca_cert)
    quiet.FLEET_GIT_HOSTS = [netloc]
    quiet.FLEET_GIT_TOKEN_HOST = netloc
    quiet.FLEET_GIT_TOKEN = sim.gitlab_token
    quiet.FLEET_GITLAB_MAX_RETRIES = 0
    quiet.FLEET_GITLAB_TIMEOUT = 1.0
    yield quiet
    sim.clear_faults()


def drive(run: WorkflowRun, *, until: Callable[[WorkflowRun], bool] | None = None, seconds: float = 30) -> WorkflowRun:
    """Advance `run` in this process as a worker would (a lease handed over is used, a wait is made due at
    once), until it ends or `until(run)`."""

    def ended() -> WorkflowRun | None:
        run.refresh_from_db()
        if run.state in TERMINAL_STATES or (until is not None and until(run)):
            return run
        advance_here(run)
        return None

    return wait_until(
        ended,
        seconds,
        f"run {run.kind} ending",
        interval=0.05,
        explain=lambda: f"stuck at {run.current_step} ({run.state}): {timeline(run)[-3:]}",
    )


def advance_here(run: WorkflowRun) -> None:
    """What a worker does with the run's wake-up: use a lease handed over, else make the run due now."""
    handed_over = run.lease_owner if run.lease_owner.startswith("handoff/") else None
    if handed_over is None:
        WorkflowRun.objects.filter(pk=run.pk).update(wake_at=Now())
    engine.advance(run.pk, worker_id="test", lease_token=handed_over)


def drive_all(done: Callable[[], bool], seconds: float = 60) -> None:
    """Advance every active run here (a rollout's driver and its site runs) until `done()`."""

    def all_done() -> bool:
        if done():
            return True
        for run in WorkflowRun.objects.exclude(state__in=TERMINAL_STATES).exclude(kind="node.provision"):
            advance_here(run)
        return False

    wait_until(
        all_done,
        seconds,
        "every run done",
        interval=0.05,
        explain=lambda: f"still active: {list(WorkflowRun.objects.exclude(state__in=TERMINAL_STATES))}",
    )


def timeline(run: WorkflowRun) -> list[tuple[str, str, str]]:
    return list(run.steps.order_by("id").values_list("step", "state", "message"))


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    environment = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_GLOBAL": os.devnull, **(env or {})}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout


# --- the embedded set-up: `fleet_import --onboard` through the local git host --------------------------


def test_fleet_import_onboard_commits_the_base_stack_and_the_sites_become_active(
    sim: Simulator, local_host: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the simulated fleet as planned sites, one with a machine pre-registered and not shipped yet
    fleet_file = sim.state_dir / "fleet.json"
    fleet_import_file(path=fleet_file, actor="test", new_site_state=SiteState.PLANNED)
    first, second = (Site.objects.get(code=code) for code in sim.codes)
    waiting = services.node_create(
        actor="test", source="test", serial="G6ONB0000001", site=first, hostname="onb-new-1", mac="94:c6:91:0b:00:01"
    )

    # When `fleet_import --onboard` runs (as `make dev` does) and the runs are advanced
    out = io.StringIO()
    call_command("fleet_import", "--onboard", str(fleet_file), stdout=out)
    runs = {run.subject_id: run for run in WorkflowRun.objects.filter(kind="site.onboard")}
    assert len(runs) == 2, out.getvalue()
    printed = out.getvalue()
    assert f"onboarding {first.code}: run" in printed and "first boot token for G6ONB0000001: efb_" in printed
    done = {code: drive(runs[str(site.pk)], seconds=40) for code, site in ((s.code, s) for s in (first, second))}

    # Then every run succeeded through its seven steps, and the sites went planned -> provisioning -> active
    for code, run in done.items():
        assert run.state == RunState.SUCCEEDED, (code, run.error, timeline(run))
        assert [step for step, state, _ in timeline(run) if state == "done"] == STEPS
        site = Site.objects.get(code=code)
        assert site.state == SiteState.ACTIVE
        moves = AuditEvent.objects.filter(object_type="sites.site", object_id=str(site.pk), verb="transition")
        assert [e.payload["to"] for e in moves.order_by("id")] == ["provisioning", "active"]
        # its repository is the local git host's, and its one commit is the base stack with the marker
        repo = sim.state_dir / "repos" / f"{code}.git"
        assert Path(site.repo_url).resolve() == repo.resolve()
        assert git("rev-list", "--count", "main", cwd=repo).strip() == "1"
        files = git("ls-tree", "-r", "--name-only", "main", cwd=repo).split()
        assert MARKER_PATH in files and f"{OWNED_PREFIX}/vector/daemonset.yaml" in files
        assert (
            f"{OWNED_PREFIX}/flux-system/sync.yaml" in files and f"{OWNED_PREFIX}/metrics/node-exporter.yaml" in files
        )
        assert run.context["base_stack"]["revision"] == git("rev-parse", "main", cwd=repo).strip()

    # And the edge applied it: Vector runs on every machine, the edge still reads its own repository
    with sim.api_client(first.code) as api:
        vector = k8s.AppsV1Api(api).read_namespaced_daemon_set("vector", "edgefleet-system")
        assert vector.status.desired_number_scheduled >= 2
        source: Any = k8s.CustomObjectsApi(api).get_namespaced_custom_object(
            "source.toolkit.fluxcd.io", "v1", "flux-system", "gitrepositories", "site"
        )
        assert source["spec"]["url"] == (sim.state_dir / "repos" / f"{first.code}.git").resolve().as_uri()
        assert "secretRef" not in source["spec"]  # local repositories need no deploy token

    # The machine waiting at the first site got its bootstrap token (bound to its serial) and a provisioning run
    first_boot = done[first.code].context["first_boot"]
    assert first_boot["serials"] == [waiting.serial] and first_boot["state"] == "active"
    provision = WorkflowRun.objects.get(pk=done[first.code].context["provisioning"][waiting.serial])
    assert (provision.kind, provision.subject_id, provision.state) == ("node.provision", str(waiting.pk), "pending")
    assert "token" not in str(done[second.code].context.get("first_boot", {}))

    # Drift on base-stack files is reported like any other: a base-stack change the edge has not applied
    assert drift_check_site(second).state == DriftState.IN_SYNC
    fault = sim.add_fault("sync_failure", site=second.code)
    extra = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra, namespace: edgefleet-system}\n"
    changed = SiteRepo.for_site(second).write(
        {f"{OWNED_PREFIX}/vector/extra.yaml": extra}, owned_prefix=None, message="tune", author=Author.of("test")
    )
    drift = drift_check_site(second)
    sim.remove_fault(fault)
    assert (drift.state, drift.head_revision) == (DriftState.DRIFTED, changed.revision)
    assert drift.applied_revision == done[second.code].context["base_stack"]["revision"]

    # A base-stack upgrade is a rollout like any other: version 1.1.0 turns Vector's API on, in waves
    templates = tmp_path / "base-stack"
    shutil.copytree(base_stack.templates_root(), templates)
    monkeypatch.setattr(base_stack, "templates_root", lambda: templates)
    shutil.copytree(templates / "1.0.0", templates / "1.1.0")
    config = templates / "1.1.0" / "vector" / "config.yaml"
    config.write_text(config.read_text().replace("enabled: false", "enabled: true"))
    release = base_stack.base_stack_release("1.1.0")
    plan = rollout_plan_create(
        actor="test",
        source="test",
        name="base stack 1.1.0",
        release=release,
        target={"sites": [first.code, second.code]},
        waves=[{"name": "canary", "count": 1}, {"percent": 100}],
        failure_threshold={"count": 0},
        respect_windows=False,
    )
    rollout = rollout_start(plan=plan, actor="test", source="test", reason="Vector's API")
    drive_all(lambda: Rollout.objects.get(pk=rollout.pk).state in ("succeeded", "halted", "cancelled"))
    assert Rollout.objects.get(pk=rollout.pk).state == "succeeded"
    for site in (first, second):
        repo = sim.state_dir / "repos" / f"{site.code}.git"
        touched = git("diff", "--name-only", "main~1", "main", cwd=repo).split()
        assert f"{OWNED_PREFIX}/vector/config.yaml" in touched and all(p.startswith(OWNED_PREFIX) for p in touched)
        with sim.api_client(site.code) as api:
            edge_config: Any = k8s.CoreV1Api(api).read_namespaced_config_map("vector", "edgefleet-system")
            assert "enabled: true" in edge_config.data["vector.yaml"]

    # Importing again with --onboard starts nothing for sites onboarded already
    again = io.StringIO()
    call_command("fleet_import", "--onboard", str(fleet_file), stdout=again)
    assert f"onboarding {first.code}: onboarded" in again.getvalue()
    assert WorkflowRun.objects.filter(kind="site.onboard").count() == 2


# --- the git host refuses: a sentence in the timeline, nothing half-created, a retry continues ----------


def _new_site(**fields: Any) -> Site:
    code = f"ZZ-{uuid.uuid4().int % 1_000_000:06d}"
    return services.site_create(
        actor="test", source="test", code=code, name=code, region="test", timezone="UTC", state="planned", **fields
    )


def _project(sim: Simulator, code: str) -> Any:
    try:
        return sim.gitlab().projects.get(f"{sim.git_group}/{code}")
    except gitlab.exceptions.GitlabGetError:
        return None


def _at(step: str) -> Any:
    return lambda run: run.current_step == step and run.state == "waiting"


@pytest.mark.parametrize(
    ("problem", "words"),
    [
        ("expired", ["401", "Token is expired", "FLEET_GITLAB_TOKEN"]),
        ("role", ["403", "Owner role"]),
        ("group", ["'no-such-group' does not exist", "FLEET_GITLAB_GROUP"]),
        ("not_ours", ["already holds commits that edgefleet did not write", MARKER_PATH]),
    ],
)
def test_a_refusing_git_host_fails_the_run_with_a_sentence_and_creates_nothing(
    sim: Simulator, gitlab_host: Any, problem: str, words: list[str]
) -> None:
    # Given a planned site and a git host that will refuse
    site = _new_site()
    foreign = None
    if problem == "expired":
        gitlab_host.FLEET_GITLAB_TOKEN = sim.create_git_token(expires_at="2020-01-01")["token"]
    elif problem == "role":
        gitlab_host.FLEET_GITLAB_TOKEN = sim.create_git_token(access_level=20)["token"]
    elif problem == "group":
        gitlab_host.FLEET_GITLAB_GROUP = "no-such-group"
    else:
        group = sim.gitlab().groups.get(sim.git_group)
        foreign = sim.gitlab().projects.create({"name": site.code, "path": site.code, "namespace_id": group.id})
        foreign.files.create({"file_path": "README.md", "branch": "main", "content": "mine", "commit_message": "x"})

    # When it is onboarded
    run = drive(site_lifecycle.site_onboard_request(site=site, actor="test", source="test").run)

    # Then the run failed at `project` with the git host's sentence, and nothing was created or changed
    assert run.state == RunState.FAILED and run.current_step == "project"
    for word in words:
        assert word in run.error, run.error
    assert timeline(run)[-1][:2] == ("project", "failed")
    assert sim.gitlab_token not in run.error
    site.refresh_from_db()
    assert (site.state, site.repo_url) == (SiteState.PROVISIONING, "")
    project = _project(sim, site.code)
    if foreign is None:
        assert project is None
    else:
        assert project.id == foreign.id and not project.archived and project.files.raw("README.md", ref="main")


def test_a_retry_after_the_token_was_renewed_continues_where_the_run_stopped(
    sim: Simulator, gitlab_host: Any, tmp_path: Path
) -> None:
    # Given an onboarding that failed on an expired token
    site = _new_site()
    gitlab_host.FLEET_GITLAB_TOKEN = sim.create_git_token(expires_at="2020-01-01")["token"]
    run = drive(site_lifecycle.site_onboard_request(site=site, actor="test", source="test").run)
    assert run.state == RunState.FAILED and run.current_step == "project"

    # When the token is renewed and the run retried (the site has no cluster credentials yet)
    gitlab_host.FLEET_GITLAB_TOKEN = sim.gitlab_token
    _git_host.cache_clear()
    run = drive(retry(run=run, actor="test", source="test"), until=_at("point_edge"))

    # Then it went on from `project`: the project exists once, its first commit is the base stack, and the
    # run waits for the site's cluster with a sentence saying what is missing
    steps = timeline(run)
    assert [s for s, state, _ in steps if state == "done"] == ["begin", "project", "base_stack", "first_boot"]
    assert "has no API address or credentials yet" in steps[-1][2]
    project = _project(sim, site.code)
    assert project is not None and project.default_branch == "main"
    clone = tmp_path / "clone"
    url = sim.git_url(site.code).replace("https://", f"https://edgefleet:{sim.gitlab_token}@")
    git("clone", "-q", url, str(clone), env={"GIT_SSL_CAINFO": str(sim.ca_cert)})
    assert git("rev-list", "--format=%H", "--no-commit-header", "HEAD", cwd=clone).split() == [
        run.context["base_stack"]["revision"]
    ]
    assert site.code in (clone / MARKER_PATH).read_text() and (clone / OWNED_PREFIX / "flux-system/sync.yaml").exists()
    site.refresh_from_db()
    assert site.repo_url == sim.git_url(site.code)
    assert list(sim.gitlab().projects.get(project.id).deploytokens.list()) == []  # none before the edge answers


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ({"kind": "throttle", "seconds": 7}, ["rate-limiting edgefleet (429)", "try again in 7s"]),
        ({"kind": "api_error"}, ["failed (50"]),
        ({"kind": "offline"}, ["cannot reach the git host"]),
    ],
)
def test_an_unavailable_git_host_is_retried_then_waited_for_and_the_run_goes_on(
    sim: Simulator, gitlab_host: Any, fault: dict[str, Any], words: list[str]
) -> None:
    # Given a git host that is busy, failing or unreachable
    site = _new_site()
    fault_id = sim.add_fault(site="githost", **fault)
    run = site_lifecycle.site_onboard_request(site=site, actor="test", source="test").run

    # When the run tries: retried with backoff (after the host's Retry-After), then it waits
    run = drive(run, until=lambda r: r.current_step == "project" and r.state == "waiting")
    if fault.get("seconds"):
        assert run.wake_at is not None
        assert 5 < (run.wake_at - timezone.now()).total_seconds() <= 7.5  # the host's Retry-After, not a guess
    run = drive(run, until=lambda r: r.steps.filter(step="project", state="waiting").exists())

    # Then the timeline says what happened, in the git host's words, and the run is still going
    rows = [row for row in timeline(run) if row[0] == "project"]
    assert [state for _, state, _ in rows] == ["retrying"] * (site_common.GIT_HOST_RETRIES - 1) + ["waiting"], rows
    for _, _, message in rows:
        for word in words:
            assert word in message, message
    assert rows[-1][2].endswith("s") and "trying again in" in rows[-1][2]
    assert run.state == RunState.WAITING

    # And once the host is back it continues: one project, then on to the site's cluster
    sim.remove_fault(fault_id)
    assert _project(sim, site.code) is None
    run = drive(run, until=_at("point_edge"))
    assert _project(sim, site.code) is not None
    assert Node.objects.filter(site=site).count() == 0 and Site.objects.get(pk=site.pk).state == "provisioning"


def test_an_onboarding_waits_for_a_site_whose_cluster_does_not_answer_yet(sim: Simulator, local_host: Any) -> None:
    site = _new_site()
    services.cluster_set_credentials(
        cluster=site.cluster, actor="test", source="test", api_url="https://127.0.0.1:9", token="t0ken"
    )
    run = drive(
        site_lifecycle.site_onboard_request(site=site, actor="test", source="test").run, until=_at("point_edge")
    )
    assert "the site's cluster does not answer" in timeline(run)[-1][2]
    assert NodeState.ACTIVE not in Node.objects.filter(site=site).values_list("state", flat=True)
