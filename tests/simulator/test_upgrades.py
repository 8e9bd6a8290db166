"""The system-upgrade-controller of the simulator: Plans (upgrade.cattle.io/v1) upgrade K3s node by node,
seen through kubectl and the official client as on a real K3s site: servers first, then agents after their
prepare step, cordoned and drained through the Eviction API (a disruption budget makes the drain wait),
versions and /version moved to the target, the Plan's status as the controller writes it, and the faults
upgrade_fail and upgrade_hang."""

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from simulator.testing import Simulator, running_simulator
from tests.simulator.conftest import FAST, KUBECTL
from tests.support import wait_until

pytestmark = pytest.mark.integration

OLD, NEW = "v1.30.8+k3s1", "v1.31.4+k3s1"
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"
PLANS = (Path(__file__).resolve().parents[2] / "templates" / "k3s" / NEW / "plans.yaml").read_text()


def plans_yaml(version: str = NEW) -> str:
    return PLANS.replace("{{ release.namespace }}", "system-upgrade").replace("{{ release.version }}", version)


@pytest.fixture(scope="module")
def old_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """Four sites whose machines run the previous minor version."""
    state = tmp_path_factory.mktemp("upgrade-sim")
    with running_simulator(sites=4, state_dir=state, extra_args=[*FAST, "--k3s-version", OLD]) as sim:
        yield sim


def kubectl(sim: Simulator, code: str, tmp_path: Path, *args: str, stdin: str | None = None) -> str:
    command = [KUBECTL, "--kubeconfig", str(sim.kubeconfig_path(code)), "--cache-dir", str(tmp_path / "kc"), *args]
    done = subprocess.run(command, capture_output=True, text=True, input=stdin, timeout=60, check=False)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}{done.stdout}"
    return done.stdout


def nodes(sim: Simulator, code: str) -> list[Any]:
    return list(k8s.CoreV1Api(sim.api_client(code)).list_node().items)


def plan(sim: Simulator, code: str, name: str) -> dict[str, Any]:
    api = k8s.CustomObjectsApi(sim.api_client(code))
    found: dict[str, Any] = api.get_namespaced_custom_object("upgrade.cattle.io", "v1", "system-upgrade", "plans", name)
    return found


def complete(obj: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Complete"), {})


def start_upgrade(sim: Simulator, code: str, tmp_path: Path, extra: str = "") -> None:
    kubectl(sim, code, tmp_path, "create", "namespace", "system-upgrade")
    kubectl(sim, code, tmp_path, "apply", "-f", "-", stdin=extra + plans_yaml())


def test_plans_upgrade_servers_then_agents_and_kubectl_shows_it(old_fleet: Simulator, tmp_path: Path) -> None:
    sim, code = old_fleet, old_fleet.codes[0]
    assert k8s.VersionApi(sim.api_client(code)).get_code().git_version == OLD
    server = next(n.metadata.name for n in nodes(sim, code) if CONTROL_PLANE in n.metadata.labels)
    agents = sorted(n.metadata.name for n in nodes(sim, code) if n.metadata.name != server)
    held = sim.add_fault("upgrade_hang", site=code, node=server)  # to look at the upgrade while it runs
    start_upgrade(sim, code, tmp_path)

    # During: the server plan applies on the server, cordoned; the agents wait for it (prepare), uncordoned
    wait_until(
        lambda: plan(sim, code, "server-plan").get("status", {}).get("applying") == [server], 10, what="applying"
    )
    during = kubectl(sim, code, tmp_path, "get", "plans.upgrade.cattle.io", "-n", "system-upgrade", "-o", "wide")
    assert during.splitlines()[0].split() == ["NAME", "IMAGE", "CHANNEL", "VERSION", "COMPLETE", "MESSAGE", "APPLYING"]
    rows = {line.split()[0]: line.split() for line in during.splitlines()[1:]}
    assert rows["server-plan"][1:] == ["rancher/k3s-upgrade", NEW, "False", f'["{server}"]']
    wide = {
        line.split()[0]: line.split()
        for line in kubectl(sim, code, tmp_path, "get", "nodes", "-o", "wide").splitlines()[1:]
    }
    assert wide[server][1] == "Ready,SchedulingDisabled" and wide[server][4] == OLD
    assert {wide[a][1] for a in agents} == {"Ready"} and {wide[a][4] for a in agents} == {OLD}
    sim.remove_fault(held)

    # After: every node on the new version, uncordoned, labelled with the plan's hash; the API reports it
    def done() -> bool:
        return all(n.status.node_info.kubelet_version == NEW and not n.spec.unschedulable for n in nodes(sim, code))

    wait_until(done, 30, what="every node upgraded")
    wait_until(lambda: complete(plan(sim, code, "agent-plan")).get("status") == "True", 10, what="agent plan complete")
    server_plan = plan(sim, code, "server-plan")
    assert server_plan["status"]["latestVersion"] == "v1.31.4-k3s1" and len(server_plan["status"]["latestHash"]) == 56
    assert "applying" not in server_plan["status"]
    assert all(
        n.metadata.labels["plan.upgrade.cattle.io/server-plan"] for n in nodes(sim, code) if n.metadata.name == server
    )
    assert k8s.VersionApi(sim.api_client(code)).get_code().git_version == NEW
    wide = kubectl(sim, code, tmp_path, "get", "nodes", "-o", "wide")
    rows = [line.split() for line in wide.splitlines()[1:]]
    assert {row[1] for row in rows} == {"Ready"} and {row[4] for row in rows} == {NEW}
    listed = kubectl(sim, code, tmp_path, "get", "plans.upgrade.cattle.io", "-n", "system-upgrade")
    assert [line.split()[:4] for line in listed.splitlines()[1:]] == [
        ["agent-plan", "rancher/k3s-upgrade", NEW, "True"],
        ["server-plan", "rancher/k3s-upgrade", NEW, "True"],
    ]
    listed_jobs = kubectl(sim, code, tmp_path, "get", "jobs", "-n", "system-upgrade").splitlines()
    assert listed_jobs[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert {line.split()[1:3] == ["Complete", "1/1"] for line in listed_jobs[1:]} == {True}
    jobs = json.loads(kubectl(sim, code, tmp_path, "get", "jobs", "-n", "system-upgrade", "-o", "json"))["items"]
    assert sorted(j["metadata"]["labels"]["upgrade.cattle.io/node"] for j in jobs) == sorted([server, *agents])
    assert all(j["metadata"]["name"].startswith("apply-") and len(j["metadata"]["name"]) <= 63 for j in jobs)

    # A new patch version in the Plans: every node again, and the previous version's Jobs deleted
    kubectl(sim, code, tmp_path, "apply", "-f", "-", stdin=plans_yaml("v1.31.5+k3s1"))
    wait_until(lambda: {n.status.node_info.kubelet_version for n in nodes(sim, code)} == {"v1.31.5+k3s1"}, 30)
    listed_now = k8s.BatchV1Api(sim.api_client(code)).list_namespaced_job("system-upgrade").items
    versions = {(j.metadata.labels or {}).get("upgrade.cattle.io/version") for j in listed_now}
    assert versions == {"v1.31.5-k3s1"}


BLOCKING_APP = """\
apiVersion: v1
kind: Namespace
metadata: {name: pos}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: pos, namespace: pos}
spec:
  replicas: 3
  selector: {matchLabels: {app: pos}}
  template:
    metadata: {labels: {app: pos}}
    spec:
      containers: [{name: pos, image: registry.example/pos:1}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: pos, namespace: pos}
spec:
  minAvailable: 3
  selector: {matchLabels: {app: pos}}
---
"""


def test_a_disruption_budget_makes_the_drain_wait_until_it_allows(old_fleet: Simulator, tmp_path: Path) -> None:
    sim, code = old_fleet, old_fleet.codes[1]
    core = k8s.CoreV1Api(sim.api_client(code))
    kubectl(sim, code, tmp_path, "apply", "-f", "-", stdin=BLOCKING_APP)

    def pos_pods() -> list[Any]:
        return [p for p in core.list_namespaced_pod("pos").items if p.status.phase == "Running"]

    wait_until(lambda: len(pos_pods()) == 3 and all(p.status.container_statuses[0].ready for p in pos_pods()), 10)
    start_upgrade(sim, code, tmp_path)

    # An agent that runs a pos pod gets cordoned and its drain waits: no pod is evicted past the budget
    def blocked() -> Any:
        hosts = {p.spec.node_name for p in pos_pods()}
        agents = [n for n in nodes(sim, code) if CONTROL_PLANE not in n.metadata.labels]
        return next((n for n in agents if n.spec.unschedulable and n.metadata.name in hosts), None)

    node = wait_until(blocked, 20, what="an agent running a pos pod cordoned").metadata.name
    assert any(p.spec.node_name == node for p in pos_pods())
    assert plan(sim, code, "agent-plan")["status"]["applying"] == [node]
    assert next(n for n in nodes(sim, code) if n.metadata.name == node).status.node_info.kubelet_version == OLD

    assert len(pos_pods()) == 3
    # When the budget allows one disruption, the drain goes on and the upgrade completes
    kubectl(
        sim, code, tmp_path, "patch", "pdb", "pos", "-n", "pos", "--type=merge", "-p", '{"spec":{"minAvailable":1}}'
    )
    wait_until(
        lambda: all(n.status.node_info.kubelet_version == NEW and not n.spec.unschedulable for n in nodes(sim, code)),
        30,
        what="every node upgraded once the budget allowed",
    )
    wait_until(lambda: len(pos_pods()) == 3, 10, what="the pos pods running again")


def test_a_failing_upgrade_leaves_its_node_cordoned_on_the_old_version(old_fleet: Simulator, tmp_path: Path) -> None:
    sim, code = old_fleet, old_fleet.codes[2]
    sim.add_fault("upgrade_fail", site=code)
    start_upgrade(sim, code, tmp_path)

    failed = wait_until(
        lambda: complete(plan(sim, code, "server-plan")).get("reason") == "JobFailed", 30, what="failed"
    )
    message = complete(plan(sim, code, "server-plan"))["message"]
    assert failed and complete(plan(sim, code, "server-plan"))["status"] == "False"
    server = plan(sim, code, "server-plan")["status"]["applying"][0]
    assert f"failed on Node {server}: BackoffLimitExceeded: Job has reached the specified backoff limit" in message
    node = next(n for n in nodes(sim, code) if n.metadata.name == server)
    assert node.spec.unschedulable and node.status.node_info.kubelet_version == OLD
    listed = kubectl(sim, code, tmp_path, "get", "plans.upgrade.cattle.io", "-n", "system-upgrade")
    assert "JobFailed" not in listed and "failed on Node" in listed  # the Message column
    assert all(n.status.node_info.kubelet_version == OLD for n in nodes(sim, code))  # agents wait for the servers

    # Once the cause is gone, deleting the failed Job makes the controller try again, and it goes through
    sim.clear_faults()
    kubectl(sim, code, tmp_path, "delete", "jobs", "--all", "-n", "system-upgrade")
    wait_until(lambda: complete(plan(sim, code, "agent-plan")).get("status") == "True", 30, what="the retry through")
    assert all(n.status.node_info.kubelet_version == NEW and not n.spec.unschedulable for n in nodes(sim, code))


def test_a_hanging_upgrade_is_failed_by_its_job_deadline(old_fleet: Simulator, tmp_path: Path) -> None:
    sim, code = old_fleet, old_fleet.codes[3]
    sim.add_fault("upgrade_hang", site=code)
    kubectl(sim, code, tmp_path, "create", "namespace", "system-upgrade")
    hurried = plans_yaml().replace("  concurrency: 1\n", "  concurrency: 1\n  jobActiveDeadlineSecs: 2\n")
    kubectl(sim, code, tmp_path, "apply", "-f", "-", stdin=hurried)

    job = wait_until(lambda: k8s.BatchV1Api(sim.api_client(code)).list_namespaced_job("system-upgrade").items, 10)[0]
    assert job.spec.active_deadline_seconds == 2 and job.spec.backoff_limit == 2
    wait_until(lambda: complete(plan(sim, code, "server-plan")).get("reason") == "JobFailed", 20, what="deadline")
    assert (
        "DeadlineExceeded: Job was active longer than specified deadline"
        in complete(plan(sim, code, "server-plan"))["message"]
    )
    assert all(n.status.node_info.kubelet_version == OLD for n in nodes(sim, code))
