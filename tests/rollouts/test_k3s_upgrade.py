"""A K3s upgrade of a simulated fleet as a rollout, end to end: a real Celery worker, the simulator over
HTTP running the system-upgrade-controller's Plans that the release writes into each site's repository,
and every site verified with the official client afterwards.

The fleet runs v1.30.8+k3s1; the release is v1.31.4+k3s1 (the platform's `k3s` application, rollouts.k3s).
The canary upgrades alone; the second wave has a site whose PodDisruptionBudget blocks its drain, which
waits (nothing evicted past the budget) until the budget allows; the third wave starts with a site whose
node upgrade fails, which halts that wave at the threshold and leaves the node cordoned on its old version.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from fleet.errors import Invalid
from fleet.workflows.models import WorkflowRun
from rollouts import services
from rollouts.choices import RolloutState, SiteRolloutState
from rollouts.k3s import k3s_release
from rollouts.models import Rollout, SiteRollout
from simulator.testing import Simulator, running_simulator
from sites.imports import fleet_import_file
from sites.models import Cluster, Site
from sites.probing import site_probe
from tests.rollouts.conftest import commit_count, git_show, wait_sweeping
from tests.support.services import Worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

OLD, NEW = "v1.30.8+k3s1", "v1.31.4+k3s1"
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"
FAST = ["--pod-start-seconds", "0.2", "--job-seconds", "0.3", "--k3s-version", OLD]


@pytest.fixture
def old_fleet(tmp_path: Path) -> Iterator[Simulator]:
    """Eight sites on the previous minor version, imported, without windows, probed (versions recorded)."""
    with running_simulator(sites=8, state_dir=tmp_path / "sim", sync_interval=0.2, extra_args=FAST) as sim:
        fleet_import_file(path=sim.state_dir / "fleet.json", actor="test")
        Site.objects.update(business_hours=[], maintenance_windows=[])
        yield sim


def deploy_pos(sim: Simulator, code: str, *, min_available: int) -> None:
    """What the base stack and an application left at the site: the system-upgrade namespace, and `pos`
    (three replicas) with a disruption budget."""
    api = sim.api_client(code)
    core, apps, policy = k8s.CoreV1Api(api), k8s.AppsV1Api(api), k8s.PolicyV1Api(api)
    for name in ("system-upgrade", "pos"):
        core.create_namespace({"metadata": {"name": name}})
    labels = {"app": "pos"}
    apps.create_namespaced_deployment(
        "pos",
        {
            "metadata": {"name": "pos"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "pos", "image": "registry.example/pos:1"}]},
                },
            },
        },
    )
    policy.create_namespaced_pod_disruption_budget(
        "pos",
        {"metadata": {"name": "pos"}, "spec": {"minAvailable": min_available, "selector": {"matchLabels": labels}}},
    )


def pos_available(sim: Simulator, code: str) -> bool:
    deployment = k8s.AppsV1Api(sim.api_client(code)).read_namespaced_deployment("pos", "pos")
    conditions = deployment.status.conditions or []
    return any(c.type == "Available" and c.status == "True" for c in conditions)


def nodes(sim: Simulator, code: str) -> list[Any]:
    return list(k8s.CoreV1Api(sim.api_client(code)).list_node().items)


def upgraded(sim: Simulator, code: str) -> bool:
    """Every node on the new version, Ready and uncordoned, and the API reporting it (official client)."""

    def ready(node: Any) -> bool:
        return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)

    found = nodes(sim, code)
    return (
        all(n.status.node_info.kubelet_version == NEW and ready(n) and not n.spec.unschedulable for n in found)
        and k8s.VersionApi(sim.api_client(code)).get_code().git_version == NEW
    )


def row(rollout: Rollout, code: str) -> SiteRollout:
    return SiteRollout.objects.select_related("workflow_run").get(rollout=rollout, site__code=code)


def last_status(rollout: Rollout, code: str) -> str:
    run = row(rollout, code).workflow_run
    return str(((WorkflowRun.objects.get(pk=run.pk).context or {}) if run else {}).get("last_status", ""))


def test_a_fleet_upgrades_k3s_in_waves_waiting_on_budgets_and_halting_on_a_failed_node(
    celery_worker: Worker, old_fleet: Simulator
) -> None:
    sim = old_fleet
    canary, blocked, early, failing, later = sim.codes[0], sim.codes[1], sim.codes[2:4], sim.codes[4], sim.codes[5:]
    for code in sim.codes:
        deploy_pos(sim, code, min_available=3 if code == blocked else 2)
    for code in sim.codes:
        wait_sweeping(lambda code=code: pos_available(sim, code), 20, f"pos available at {code}")
        site_probe(site=Site.objects.get(code=code))
    assert set(Cluster.objects.values_list("k3s_version", flat=True)) == {OLD}
    sim.add_fault("upgrade_fail", site=failing)
    release = k3s_release(NEW, actor="test", source="test")

    # A roll back is refused in the plan: K3s is not downgraded
    waves = [{"name": "canary", "sites": [canary]}, {"name": "early", "sites": [blocked, *early]},
             {"name": "rest", "sites": [failing, *later]}]  # fmt: skip
    fields: dict[str, Any] = {"release": release, "target": {"sites": sim.codes}, "waves": waves, "max_parallel": 1}
    fields.update(failure_threshold={"count": 0}, respect_windows=True)
    with pytest.raises(Invalid) as refused:
        services.rollout_plan_create(actor="test", source="test", name="k3s-rb", auto_rollback=True, **fields)
    assert refused.value.field == "auto_rollback"

    plan = services.rollout_plan_create(actor="test", source="test", name="k3s-1.31", **fields)
    rollout = services.rollout_start(plan=plan, actor="test", source="test")

    # The canary converges: every node upgraded, verified from the cluster
    wait_sweeping(lambda: row(rollout, canary).state == SiteRolloutState.SUCCEEDED, 60, "the canary upgraded")
    assert upgraded(sim, canary) and pos_available(sim, canary)

    # The blocked site waits on its budget: an agent cordoned, its pos pods not evicted, the site verifying
    wait_sweeping(lambda: "disruption budget(s) pos/pos" in last_status(rollout, blocked), 60, "the drain waiting")
    core = k8s.CoreV1Api(sim.api_client(blocked))
    cordoned = [n.metadata.name for n in nodes(sim, blocked) if n.spec.unschedulable]
    assert row(rollout, blocked).state == SiteRolloutState.VERIFYING and len(cordoned) == 1
    pods = core.list_namespaced_pod("pos").items
    assert len(pods) == 3 and any(p.spec.node_name == cordoned[0] for p in pods)
    assert all(row(rollout, code).state == SiteRolloutState.PENDING for code in early)
    k8s.PolicyV1Api(sim.api_client(blocked)).patch_namespaced_pod_disruption_budget(
        "pos", "pos", {"spec": {"minAvailable": 2}}
    )

    # The failing site halts its wave at the threshold; the sites after it in the wave never start
    wait_sweeping(lambda: Rollout.objects.get(pk=rollout.pk).state == RolloutState.HALTED, 120, "the rollout halting")
    rollout.refresh_from_db()
    assert "more than the threshold" in rollout.halted_reason
    failed = row(rollout, failing)
    server = next(n.metadata.name for n in nodes(sim, failing) if CONTROL_PLANE in n.metadata.labels)
    assert failed.state == SiteRolloutState.FAILED
    assert f"failed on Node {server}: BackoffLimitExceeded" in failed.error
    assert {row(rollout, code).state for code in later} == {SiteRolloutState.SKIPPED}
    assert {code: commit_count(sim.repo_path(code)) for code in later} == dict.fromkeys(later, 0)

    # Every site of the first two waves: all nodes on the new version, Ready, uncordoned; pos available again
    for code in [canary, blocked, *early]:
        assert row(rollout, code).state == SiteRolloutState.SUCCEEDED
        assert upgraded(sim, code), code
        assert pos_available(sim, code), code
        assert f"version: {NEW}" in (git_show(sim.repo_path(code), "main:apps/k3s/plans.yaml") or "")
    versions = dict(Cluster.objects.values_list("site__code", "k3s_version"))
    assert versions == {code: NEW if code in [canary, blocked, *early] else OLD for code in sim.codes}
    # The failed site's server stays cordoned on the old version, the agents untouched (they wait for it)
    by_name = {n.metadata.name: n for n in nodes(sim, failing)}
    assert by_name[server].spec.unschedulable and by_name[server].status.node_info.kubelet_version == OLD
    assert {n.status.node_info.kubelet_version for n in by_name.values()} == {OLD}

    # A roll back asked now halts (it is already halted) and reverts nothing: the node is left for a person
    commits = commit_count(sim.repo_path(failing))
    services.rollout_rollback(rollout=rollout, actor="test", source="test", reason="upgrade failed at a site")
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.HALTED and rollout.rollback_requested_at is None
    assert commit_count(sim.repo_path(failing)) == commits
    assert next(n for n in nodes(sim, failing) if n.metadata.name == server).spec.unschedulable
