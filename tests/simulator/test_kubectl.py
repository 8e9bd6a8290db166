"""kubectl, unchanged, against a site through its kubeconfig from DIR/kubeconfigs/."""

import datetime as dt
import json
import subprocess
import threading
from pathlib import Path

import pytest

from simulator.testing import Simulator
from tests.simulator.conftest import Kubectl, kubectl_command
from tests.support import wait_until

pytestmark = pytest.mark.integration

APP = """\
apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: pos
  namespace: {ns}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: pos}}
  template:
    metadata:
      labels: {{app: pos}}
    spec:
      containers:
      - name: pos
        image: registry.example/pos:{version}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: pos-config, namespace: {ns}}}
data: {{greeting: hello}}
"""

PDB = """\
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: pos, namespace: {ns}}}
spec:
  minAvailable: 1
  selector:
    matchLabels: {{app: pos}}
"""


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_get_nodes_and_pods(kubectl: Kubectl, sim: Simulator, site_code: str) -> None:
    nodes = kubectl("get", "nodes").stdout
    for node in sim.site(site_code)["nodes"]:
        assert node["hostname"] in nodes
    assert nodes.count(" Ready ") == len(sim.site(site_code)["nodes"])
    assert "control-plane" in nodes
    pods = kubectl("get", "pods", "-A", "-o", "wide").stdout
    assert "NOMINATED NODE" in pods and "kube-system" in pods and "coredns-" in pods
    server = sim.site(site_code)["nodes"][0]["hostname"]
    assert server in pods
    version = json.loads(kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.31.4+k3s1"


def test_apply_server_side_wait_and_delete(kubectl: Kubectl, tmp_path: Path) -> None:
    manifest = _write(tmp_path, "app.yaml", APP.format(ns="kubectl-apply", replicas=2, version="1.0"))
    out = kubectl("apply", "--server-side", "-f", manifest).stdout
    assert "deployment.apps/pos serverside-applied" in out and "configmap/pos-config serverside-applied" in out
    kubectl("wait", "--for=condition=Available", "deployment/pos", "-n", "kubectl-apply", "--timeout=30s")
    # Applying a new version rolls the Deployment forward.
    manifest = _write(tmp_path, "app2.yaml", APP.format(ns="kubectl-apply", replicas=2, version="2.0"))
    kubectl("apply", "--server-side", "-f", manifest)
    kubectl("rollout", "status", "deployment/pos", "-n", "kubectl-apply", "--timeout=30s")
    images = kubectl("get", "pods", "-n", "kubectl-apply", "-o", "jsonpath={.items[*].spec.containers[0].image}").stdout
    assert images.split() == ["registry.example/pos:2.0"] * 2
    kubectl("delete", "deployment", "pos", "-n", "kubectl-apply", "--timeout=30s")
    gone = kubectl("get", "deployment", "pos", "-n", "kubectl-apply", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    kubectl("delete", "namespace", "kubectl-apply", "--timeout=30s")


def test_cordon_and_uncordon(kubectl: Kubectl, sim: Simulator, site_code: str) -> None:
    node = sim.site(site_code)["nodes"][-1]["hostname"]
    kubectl("cordon", node)
    assert kubectl("get", "node", node, "-o", "jsonpath={.spec.unschedulable}").stdout == "true"
    assert "SchedulingDisabled" in kubectl("get", "node", node).stdout
    kubectl("uncordon", node)
    assert kubectl("get", "node", node, "-o", "jsonpath={.spec.unschedulable}").stdout == ""


def _pod_node(kubectl: Kubectl, ns: str) -> str:
    return kubectl("get", "pods", "-n", ns, "-l", "app=pos", "-o", "jsonpath={.items[*].spec.nodeName}").stdout


def test_drain_waits_for_the_disruption_budget(
    kubectl: Kubectl, sim: Simulator, site_code: str, tmp_path: Path
) -> None:
    # Given one guarded pod
    ns = "kubectl-drain"
    kubectl("apply", "--server-side", "-f", _write(tmp_path, "app.yaml", APP.format(ns=ns, replicas=1, version="1")))
    kubectl("apply", "--server-side", "-f", _write(tmp_path, "pdb.yaml", PDB.format(ns=ns)))
    kubectl("wait", "--for=condition=Available", "deployment/pos", "-n", ns, "--timeout=30s")
    node = _pod_node(kubectl, ns)
    assert node
    # When its node is drained with a short timeout, the budget blocks the drain
    blocked = kubectl("drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=3s", check=False)
    assert blocked.returncode != 0
    assert "disruption budget" in blocked.stderr
    assert _pod_node(kubectl, ns) == node
    # When it is drained again and the budget is relaxed while it retries
    command = kubectl_command(
        sim,
        site_code,
        tmp_path / "cache",
        "drain",
        node,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=40s",
    )
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as drain:
        assert drain.stdout is not None
        output: list[str] = []
        reader = threading.Thread(target=lambda: output.extend(drain.stdout or []), daemon=True)
        reader.start()
        try:
            wait_until(
                lambda: any("will retry after 5s" in line for line in output), timeout=20, what="a blocked eviction"
            )
            assert drain.poll() is None, "drain should still be retrying the blocked eviction"
            kubectl("patch", "pdb", "pos", "-n", ns, "--type=merge", "-p", '{"spec":{"minAvailable":0}}')
            drain.wait(timeout=30)
            reader.join(timeout=5)
        finally:
            if drain.poll() is None:
                drain.kill()
    # Then the drain finishes and the pod runs elsewhere
    assert drain.returncode == 0, "".join(output)
    assert f"node/{node} drained" in "".join(output)
    wait_until(lambda: (n := _pod_node(kubectl, ns)) and n != node, timeout=15, what="pod rescheduled")
    kubectl("uncordon", node)
    kubectl("delete", "namespace", ns)


BROKEN = """\
apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: pos
  namespace: {ns}
spec:
  replicas: 1
  progressDeadlineSeconds: {deadline}
  minReadySeconds: {min_ready}
  selector:
    matchLabels: {{app: pos}}
  template:
    metadata:
      labels: {{app: pos}}
    spec:
      containers:
      - name: pos
        image: registry.example/pos:{version}
"""

DAEMONSET = """\
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: agent, namespace: {ns}}}
spec:
  selector:
    matchLabels: {{app: agent}}
  template:
    metadata:
      labels: {{app: agent}}
    spec:
      containers:
      - name: agent
        image: registry.example/agent:{version}
"""


def _conditions(kubectl: Kubectl, kind: str, name: str, ns: str) -> dict[str, dict[str, str]]:
    found = json.loads(kubectl("get", kind, name, "-n", ns, "-o", "json").stdout)
    return {c["type"]: c for c in found.get("status", {}).get("conditions", [])}


def test_rollout_status_fails_with_the_progress_deadline_of_a_deployment_that_never_becomes_ready(
    kubectl: Kubectl, sim: Simulator, site_code: str, tmp_path: Path
) -> None:
    # Given a release whose pods never become ready, with a short progress deadline
    ns = "kubectl-deadline"
    sim.add_fault("unavailable_workloads", site=site_code)
    manifest = _write(tmp_path, "broken.yaml", BROKEN.format(ns=ns, deadline=3, min_ready=0, version="1"))
    kubectl("apply", "--server-side", "-f", manifest)

    # When kubectl waits for its rollout
    status = kubectl("rollout", "status", "deployment/pos", "-n", ns, "--timeout=60s", check=False)

    # Then it gives up with Kubernetes' own message, because the Deployment says so
    assert status.returncode != 0, status.stdout
    assert 'deployment "pos" exceeded its progress deadline' in status.stderr
    progressing = _conditions(kubectl, "deployment", "pos", ns)["Progressing"]
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert progressing["message"].endswith("has timed out progressing.")
    assert _conditions(kubectl, "deployment", "pos", ns)["Available"]["status"] == "False"

    # When the pods recover, the rollout makes progress again and completes
    sim.clear_faults()
    done = kubectl("rollout", "status", "deployment/pos", "-n", ns, "--timeout=60s")
    assert 'deployment "pos" successfully rolled out' in done.stdout
    progressing = _conditions(kubectl, "deployment", "pos", ns)["Progressing"]
    assert (progressing["status"], progressing["reason"]) == ("True", "NewReplicaSetAvailable")
    kubectl("delete", "namespace", ns)


def test_a_new_template_restarts_the_deadline_and_reports_progress(kubectl: Kubectl, tmp_path: Path) -> None:
    ns = "kubectl-progress"
    kubectl(
        "apply",
        "--server-side",
        "-f",
        _write(tmp_path, "v1.yaml", BROKEN.format(ns=ns, deadline=600, min_ready=0, version="1")),
    )
    kubectl("rollout", "status", "deployment/pos", "-n", ns, "--timeout=60s")
    first = _conditions(kubectl, "deployment", "pos", ns)["Progressing"]
    assert first["reason"] == "NewReplicaSetAvailable"

    kubectl(
        "apply",
        "--server-side",
        "-f",
        _write(tmp_path, "v2.yaml", BROKEN.format(ns=ns, deadline=600, min_ready=0, version="2")),
    )
    kubectl("rollout", "status", "deployment/pos", "-n", ns, "--timeout=60s")
    second = _conditions(kubectl, "deployment", "pos", ns)["Progressing"]
    # The condition names the new ReplicaSet: a complete rollout of the old one says nothing about it.
    assert second["reason"] == "NewReplicaSetAvailable" and second["message"] != first["message"]
    kubectl("delete", "namespace", ns)


def test_min_ready_seconds_delays_availability(kubectl: Kubectl, tmp_path: Path) -> None:
    ns = "kubectl-min-ready"
    manifest = _write(tmp_path, "slow.yaml", BROKEN.format(ns=ns, deadline=600, min_ready=4, version="1"))
    kubectl("apply", "--server-side", "-f", manifest)
    kubectl("rollout", "status", "deployment/pos", "-n", ns, "--timeout=60s")

    pod = json.loads(kubectl("get", "pods", "-n", ns, "-l", "app=pos", "-o", "json").stdout)["items"][0]
    ready_at = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")["lastTransitionTime"]
    available_at = _conditions(kubectl, "deployment", "pos", ns)["Available"]["lastTransitionTime"]
    # Available only once the pod had been ready for minReadySeconds (timestamps have whole seconds).
    gap = dt.datetime.fromisoformat(available_at) - dt.datetime.fromisoformat(ready_at)
    assert gap >= dt.timedelta(seconds=3), (ready_at, available_at)
    kubectl("delete", "namespace", ns)


def test_rollout_status_of_a_daemonset(kubectl: Kubectl, sim: Simulator, site_code: str, tmp_path: Path) -> None:
    ns = "kubectl-daemonset"
    kubectl("create", "namespace", ns)
    kubectl("apply", "--server-side", "-f", _write(tmp_path, "ds.yaml", DAEMONSET.format(ns=ns, version="1")))
    done = kubectl("rollout", "status", "daemonset/agent", "-n", ns, "--timeout=60s")
    assert 'daemon set "agent" successfully rolled out' in done.stdout
    status = json.loads(kubectl("get", "daemonset", "agent", "-n", ns, "-o", "json").stdout)["status"]
    nodes = len(sim.site(site_code)["nodes"])
    assert (status["desiredNumberScheduled"], status["numberAvailable"], status["updatedNumberScheduled"]) == (
        nodes,
        nodes,
        nodes,
    )
    kubectl("delete", "namespace", ns)
