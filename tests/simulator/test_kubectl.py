"""kubectl, unchanged, against a site through its kubeconfig from DIR/kubeconfigs/."""

import json
import subprocess
import threading
from pathlib import Path

from simulator.testing import Simulator
from tests.simulator.conftest import KUBECTL, Kubectl, wait_for

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
    command = [
        KUBECTL,
        "--kubeconfig",
        str(sim.kubeconfig_path(site_code)),
        "--cache-dir",
        str(tmp_path / "cache"),
        "drain",
        node,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=40s",
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as drain:
        assert drain.stdout is not None
        output: list[str] = []
        reader = threading.Thread(target=lambda: output.extend(drain.stdout or []), daemon=True)
        reader.start()
        try:
            wait_for(
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
    wait_for(lambda: (n := _pod_node(kubectl, ns)) and n != node, timeout=15, what="pod rescheduled")
    kubectl("uncordon", node)
    kubectl("delete", "namespace", ns)
