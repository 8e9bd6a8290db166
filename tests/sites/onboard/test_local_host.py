"""`site.onboard` step by step against a real simulator, advanced by the engine in this process, through the
local git host: the embedded set-up's path (`fleet_import --onboard`, as `make dev` does) and a site whose
cluster does not answer yet. Through GitLab, with its refusals and faults, is test_gitlab_host.py; the whole
path with a real worker, deploy token and decommission is tests/sites/test_onboard_e2e.py."""

import io
import shutil
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from kubernetes import client as k8s

from fleet.audit.models import AuditEvent
from fleet.workflows.choices import RunState
from fleet.workflows.models import WorkflowRun
from rollouts import base_stack
from rollouts.choices import DriftState
from rollouts.drift import drift_check_site
from rollouts.models import Rollout
from rollouts.services import rollout_plan_create, rollout_start
from simulator.testing import Simulator
from sites import services, site_lifecycle
from sites.base_stack import OWNED_PREFIX
from sites.choices import NodeState, SiteState
from sites.githost.base import MARKER_PATH
from sites.imports import fleet_import_file
from sites.models import Node, Site
from sites.repos import Author, SiteRepo
from tests.sites.onboard.support import drive, drive_all, git, new_site, timeline
from tests.sites.test_lifecycle_support import at_step

pytestmark = pytest.mark.integration

STEPS = ["begin", "project", "base_stack", "first_boot", "point_edge", "await_applied", "activate"]


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


def test_an_onboarding_waits_for_a_site_whose_cluster_does_not_answer_yet(sim: Simulator, local_host: Any) -> None:
    site = new_site()
    services.cluster_set_credentials(
        cluster=site.cluster, actor="test", source="test", api_url="https://127.0.0.1:9", token="t0ken"
    )
    run = drive(
        site_lifecycle.site_onboard_request(site=site, actor="test", source="test").run, until=at_step("point_edge")
    )
    assert "the site's cluster does not answer" in timeline(run)[-1][2]
    assert NodeState.ACTIVE not in Node.objects.filter(site=site).values_list("state", flat=True)
