"""SiteCluster against the simulator's Kubernetes API: the operations the lifecycle workflows rely on,
and how the site's failures map onto the adapter's three error types."""

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s

from simulator.testing import Simulator, running_simulator
from sites.clusters import ClusterNotConfigured, ClusterNotFound, ClusterRefused, ClusterUnavailable, SiteCluster
from sites.models import Site
from tests.factories import SiteFactory
from tests.sites.test_lifecycle_support import FAST_SIM, cluster_of, import_fleet
from tests.support import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    with running_simulator(sites=1, state_dir=tmp_path_factory.mktemp("sim"), extra_args=FAST_SIM) as running:
        yield running


@pytest.fixture
def site(sim: Simulator, db: None, settings: Any) -> Iterator[Site]:
    settings.KUBE_TIMEOUT_SECONDS = 1.0
    yield import_fleet(sim)[0]
    sim.clear_faults()


def test_node_operations_are_idempotent(site: Site) -> None:
    cluster = cluster_of(site)
    name = cluster.nodes(label_selector="!node-role.kubernetes.io/control-plane")[0].name

    cluster.label_node(name, {"edgefleet.io/role": "agent"})
    cluster.cordon(name)
    cluster.cordon(name)
    cluster.taint(name, key="node.kubernetes.io/out-of-service", value="nodeshutdown")
    cluster.taint(name, key="node.kubernetes.io/out-of-service", value="nodeshutdown")
    node = cluster.node(name)

    assert node is not None and node.ready is True and node.unschedulable is True
    assert node.labels["edgefleet.io/role"] == "agent"
    assert node.taints == ["node.kubernetes.io/out-of-service:NoExecute"]
    cluster.uncordon(name)
    cluster.label_node(name, {"edgefleet.io/role": None})
    node = cluster.node(name)
    assert node is not None and node.unschedulable is False and "edgefleet.io/role" not in node.labels
    assert cluster.node("no-such-node") is None


def test_delete_node_twice_is_fine(site: Site) -> None:
    cluster = cluster_of(site)
    name = cluster.nodes(label_selector="!node-role.kubernetes.io/control-plane")[-1].name

    assert cluster.delete_node(name) is True
    assert cluster.delete_node(name) is False
    assert cluster.node(name) is None


def test_drain_names_the_disruption_budget_that_blocks_it(sim: Simulator, site: Site) -> None:
    cluster = cluster_of(site)
    name = cluster.nodes(label_selector="node-role.kubernetes.io/control-plane")[0].name
    api = sim.api_client(site.code)
    k8s.CoreV1Api(api).create_namespace({"metadata": {"name": "kds"}})
    for pod in ("kds-0", "free-0"):
        body = {
            "metadata": {"name": pod, "namespace": "kds", "labels": {"app": pod[:-2]}},
            "spec": {"nodeName": name, "containers": [{"name": "c", "image": "nginx"}]},
        }
        k8s.CoreV1Api(api).create_namespaced_pod("kds", body)
    pdb = {"metadata": {"name": "kds-pdb"}, "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "kds"}}}}
    k8s.PolicyV1Api(api).create_namespaced_pod_disruption_budget("kds", pdb)

    progress = cluster.drain(name)

    assert "kds/free-0" in progress.evicted
    assert progress.blocked == ["kds/kds-0"]
    assert "kds-pdb" in progress.reasons["kds/kds-0"]
    assert not progress.done
    assert cluster.evict("kds", "gone-0") == "gone"


def test_a_job_pinned_to_a_node_runs_there_once(sim: Simulator, site: Site) -> None:
    cluster = cluster_of(site)
    name = cluster.nodes()[0].name
    labels = {"edgefleet.io/action": "test"}

    assert cluster.create_job(
        namespace="default", name="pin-1", node=name, image="busybox", env={"A": "1"}, labels=labels
    )
    assert not cluster.create_job(namespace="default", name="pin-1", node=name, image="busybox", labels=labels)

    wait_until(lambda: (status := cluster.job("default", "pin-1")) and status.complete, 10, "the job completing")

    ran = [job for job in sim.jobs(site.code) if job["name"] == "pin-1"]
    assert len(ran) == 1 and ran[0]["node"] == name and ran[0]["env"] == {"A": "1"}
    assert cluster.job("default", "no-such-job") is None
    cluster.ensure_namespace("restore-ns")
    cluster.ensure_namespace("restore-ns")


def test_site_failures_map_to_the_adapter_errors(sim: Simulator, site: Site, db: None) -> None:
    cluster = cluster_of(site)
    assert cluster.version().startswith("v1.")

    fault = sim.add_fault("offline", site=site.code)
    with pytest.raises(ClusterUnavailable):
        cluster.nodes()
    sim.remove_fault(fault)

    fault = sim.add_fault("throttle", site=site.code, seconds=3)
    with pytest.raises(ClusterUnavailable) as throttled:
        cluster.nodes()
    assert throttled.value.status == 429 and throttled.value.retry_after == 3
    sim.remove_fault(fault)

    fault = sim.add_fault("api_error", site=site.code)
    with pytest.raises(ClusterUnavailable) as broken:
        cluster.node("x")
    assert broken.value.status in (500, 503)
    sim.remove_fault(fault)

    # A 200 that is no Kubernetes object (HTML, truncated JSON, `{}`, bytes): never a status.
    fault = sim.add_fault("garbage", site=site.code)
    for _ in range(12):
        with pytest.raises(ClusterUnavailable, match="malformed"):
            cluster.sync_status()
        with pytest.raises(ClusterUnavailable, match="malformed"):
            cluster.deployments("pos")
    sim.remove_fault(fault)

    with pytest.raises(ClusterNotFound):
        cluster._call(cluster._core.read_namespace, "no-such-namespace")
    with pytest.raises(ClusterRefused) as refused:
        cluster.create_job(namespace="default", name="Bad_Name", node="x", image="busybox")
    assert refused.value.status in (400, 422)
    with pytest.raises(ClusterNotConfigured):
        SiteCluster.for_cluster(SiteFactory().cluster)
