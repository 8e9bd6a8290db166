"""The controllers behind the Kubernetes API, through the official Python client: Deployments become available and
scale, Jobs run to completion, cordoned and deleted nodes, evictions that respect disruption budgets, and a
namespace's deletion cascading."""

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from simulator.testing import Simulator
from tests.simulator.conftest import SPARE_SITE
from tests.simulator.test_client import deployment
from tests.support import wait_until

pytestmark = pytest.mark.integration


def test_deployment_becomes_available_and_scales(api: Any, namespace: str) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment("web", replicas=2))

    def available() -> Any:
        d = apps.read_namespaced_deployment("web", namespace)
        conditions = {c.type: c.status for c in d.status.conditions or []}
        return d if conditions.get("Available") == "True" and d.status.available_replicas == 2 else None

    ready = wait_until(available, what="deployment available")
    assert ready.status.updated_replicas == 2 and ready.status.observed_generation == ready.metadata.generation
    assert {c.type for c in ready.status.conditions} == {"Available", "Progressing"}
    assert len(apps.list_namespaced_replica_set(namespace).items) == 1
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 2 and all(p.status.phase == "Running" and p.spec.node_name for p in pods)
    scale = apps.read_namespaced_deployment_scale("web", namespace)
    assert scale.spec.replicas == 2
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 3}})
    wait_until(lambda: (apps.read_namespaced_deployment("web", namespace).status.available_replicas or 0) == 3)
    # A new template makes a new ReplicaSet and moves the pods over.
    apps.patch_namespaced_deployment(
        "web",
        namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "registry.example/web:2.0"}]}}}},
    )
    wait_until(
        lambda: (
            all(
                p.spec.containers[0].image.endswith(":2.0")
                for p in core.list_namespaced_pod(namespace, label_selector="app=web").items
            )
            and len(core.list_namespaced_pod(namespace, label_selector="app=web").items) == 3
        )
    )
    # Deleting the Deployment collects its ReplicaSets and Pods.
    apps.delete_namespaced_deployment("web", namespace)
    wait_until(
        lambda: not core.list_namespaced_pod(namespace).items and not apps.list_namespaced_replica_set(namespace).items,
        what="garbage collection",
    )


def test_jobs_run_and_complete(api: Any, namespace: str, sim: Simulator, site_code: str) -> None:
    batch = client.BatchV1Api(api)
    node = sim.site(site_code)["nodes"][-1]["hostname"]
    batch.create_namespaced_job(
        namespace,
        {
            "metadata": {"name": "restore-db"},
            "spec": {
                "template": {
                    "spec": {
                        "nodeName": node,
                        "restartPolicy": "Never",
                        "containers": [
                            {
                                "name": "restore",
                                "image": "registry.example/restore:1",
                                "env": [{"name": "BACKUP_LOCATION", "value": "s3://backups/db-1"}],
                            }
                        ],
                    }
                }
            },
        },
    )
    job = wait_until(
        lambda: (j := batch.read_namespaced_job("restore-db", namespace)).status.succeeded and j, what="job completion"
    )
    assert {c.type for c in job.status.conditions if c.status == "True"} >= {"Complete"}
    assert job.status.completion_time is not None
    logged = [j for j in sim.jobs(site_code) if j["name"] == "restore-db" and j["namespace"] == namespace]
    assert logged and logged[0]["node"] == node and logged[0]["env"] == {"BACKUP_LOCATION": "s3://backups/db-1"}
    assert logged[0]["image"] == "registry.example/restore:1"
    with pytest.raises(ApiException) as exc:  # restartPolicy Always is not allowed for Jobs
        batch.create_namespaced_job(
            namespace,
            {
                "metadata": {"name": "bad"},
                "spec": {"template": {"spec": {"containers": [{"name": "x", "image": "x"}]}}},
            },
        )
    assert exc.value.status == 422


def test_cordoned_nodes_get_no_new_pods_but_keep_daemonset_pods(
    api: Any, namespace: str, sim: Simulator, site_code: str
) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    hosts = sorted(n["hostname"] for n in sim.site(site_code)["nodes"])
    cordoned = hosts[0]
    core.patch_node(cordoned, {"spec": {"unschedulable": True}})
    try:
        apps.create_namespaced_deployment(namespace, deployment("spread", replicas=4))
        pods = wait_until(
            lambda: (
                [p for p in core.list_namespaced_pod(namespace).items if p.spec.node_name]
                if len([p for p in core.list_namespaced_pod(namespace).items if p.spec.node_name]) == 4
                else []
            )
        )
        assert cordoned not in {p.spec.node_name for p in pods}
    finally:
        core.patch_node(cordoned, {"spec": {"unschedulable": None}})
    # DaemonSets put one pod on every node, cordoned or not.
    ds = [p for p in core.list_namespaced_pod("kube-system", label_selector="app=svclb-traefik").items]
    assert sorted(str(p.spec.node_name) for p in ds) == hosts


def test_deleting_a_node_removes_its_pods(sim: Simulator) -> None:
    # Given a device of its own, at a site of its own (so other tests keep their nodes), with pods on it
    code = sim.codes[SPARE_SITE]
    site_api = sim.api_client(code)
    core = client.CoreV1Api(site_api)
    sim.unbox(code, serial="G6DELNODE001", mac="94:c6:91:aa:00:01", hostname="doomed-node", bootstrap_token="t")
    wait_until(
        lambda: any(
            p.spec.node_name == "doomed-node"
            for p in core.list_namespaced_pod("kube-system", label_selector="app=svclb-traefik").items
        )
    )
    # When the Node is deleted
    core.delete_node("doomed-node")
    # Then no pod is left bound to it
    wait_until(lambda: not core.list_pod_for_all_namespaces(field_selector="spec.nodeName=doomed-node").items)
    site_api.close()


def test_eviction_respects_disruption_budgets(api: Any, namespace: str) -> None:
    core, apps, policy = client.CoreV1Api(api), client.AppsV1Api(api), client.PolicyV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment("guarded"))
    policy.create_namespaced_pod_disruption_budget(
        namespace,
        {"metadata": {"name": "guard"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}},
    )
    wait_until(lambda: (apps.read_namespaced_deployment("guarded", namespace).status.available_replicas or 0) == 1)
    pdb = wait_until(
        lambda: (
            (p := policy.read_namespaced_pod_disruption_budget("guard", namespace)).status
            and p.status.current_healthy == 1
            and p
        )
    )
    assert pdb.status.disruptions_allowed == 0
    pod = core.list_namespaced_pod(namespace).items[0].metadata.name
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": namespace}}
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_pod_eviction(pod, namespace, eviction)
    assert exc.value.status == 429 and "disruption budget" in str(exc.value.body)
    policy.patch_namespaced_pod_disruption_budget("guard", namespace, {"spec": {"minAvailable": 0}})
    core.create_namespaced_pod_eviction(pod, namespace, eviction)
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_pod(pod, namespace)
    assert exc.value.status == 404


def test_namespace_delete_cascades(api: Any) -> None:
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "short-lived"}})
    core.create_namespaced_config_map("short-lived", {"metadata": {"name": "x"}})
    client.AppsV1Api(api).create_namespaced_deployment("short-lived", deployment("gone"))
    core.delete_namespace("short-lived")
    assert core.read_namespace("short-lived").status.phase == "Terminating"
    with pytest.raises(ApiException) as exc:  # nothing new lands in a terminating namespace
        core.create_namespaced_config_map("short-lived", {"metadata": {"name": "y"}})
    assert exc.value.status == 403
    wait_until(lambda: "short-lived" not in {n.metadata.name for n in core.list_namespace().items})
    assert not core.list_namespaced_config_map("short-lived").items
    assert not core.list_namespaced_pod("short-lived").items
