"""Fault injection through the control API: validation of every argument, and the effect of each kind."""

import http.client
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from simulator.testing import Simulator
from tests.simulator.checkout import Checkout
from tests.simulator.conftest import FakeControlPlane, Raw
from tests.support import wait_until

pytestmark = pytest.mark.integration

NODES = "/api/v1/nodes"


def _status(raw: Raw) -> int:
    """The site API's answer to a GET, or 0 when the connection is dropped."""
    try:
        return raw("GET", NODES, timeout=3).status
    except (http.client.RemoteDisconnected, ConnectionError, TimeoutError):
        return 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"kind": "meteor", "rate": 1}, "unknown fault kind"),
        ({"kind": "api_error", "rate": 1.5}, "rate must be"),
        ({"kind": "api_error", "rate": -0.1}, "rate must be"),
        ({"kind": "api_error", "rate": "often"}, "rate must be"),
        ({"kind": "api_error", "site": "XX-0000"}, "unknown site"),
        ({"kind": "node_death"}, "node_death needs"),
        ({"kind": "node_death", "node": "no-such-host"}, "unknown node"),
        ({"kind": "slow", "seconds": -1}, "seconds must be"),
        ({"kind": "slow", "node": "x"}, "only applies to node_death"),
        ({"kind": "slow", "colour": "red"}, "unknown field"),
    ],
)
def test_fault_validation(sim: Simulator, body: dict[str, Any], message: str) -> None:
    status, answer = sim.request("POST", "/_sim/faults", body)
    assert status == 400 and message in answer["detail"]
    assert sim.faults() == []


def test_control_api_needs_the_admin_token(sim: Simulator) -> None:
    assert sim.request("GET", "/_sim/faults", auth=False)[0] == 401
    assert sim.request("POST", "/_sim/faults", {"kind": "slow"}, auth=False)[0] == 401
    assert sim.request("GET", "/_sim/healthz", auth=False)[0] == 200


def test_fault_lifecycle(sim: Simulator, site_code: str) -> None:
    first = sim.add_fault("slow", site=site_code, rate=0.5, seconds=0.1)
    second = sim.add_fault("sync_delay", rate=1.0, seconds=0.2)
    listed = {f["id"]: f for f in sim.faults()}
    assert listed[first]["site"] == site_code and listed[first]["rate"] == 0.5
    assert listed[second]["site"] is None
    sim.remove_fault(first)
    assert [f["id"] for f in sim.faults()] == [second]
    assert sim.request("DELETE", f"/_sim/faults/{first}")[0] == 404
    sim.clear_faults()
    assert sim.faults() == []


def test_api_errors_and_rates(sim: Simulator, site_code: str, raw: Raw) -> None:
    sim.add_fault("api_error", site=site_code, rate=1.0)
    answer = raw("GET", NODES)
    assert answer.status in (500, 503) and answer.body["kind"] == "Status"
    other = sim.codes[0]
    assert sim.request("GET", f"/_sim/sites/{other}")[0] == 200
    sim.clear_faults()
    sim.add_fault("api_error", site=site_code, rate=0.5)
    codes = [raw("GET", NODES).status for _ in range(40)]
    assert 200 in codes and ({500, 503} & set(codes))


def test_throttle_and_slow(sim: Simulator, site_code: str, raw: Raw) -> None:
    sim.add_fault("throttle", site=site_code, seconds=3)
    answer = raw("GET", NODES)
    assert answer.status == 429 and answer.headers["Retry-After"] == "3" and answer.body["reason"] == "TooManyRequests"
    sim.clear_faults()
    sim.add_fault("slow", site=site_code, seconds=0.6)
    started = time.monotonic()
    assert raw("GET", NODES).status == 200
    assert time.monotonic() - started >= 0.6


def test_timeout_holds_then_drops(sim: Simulator, site_code: str, raw: Raw) -> None:
    sim.add_fault("timeout", site=site_code, seconds=1)
    started = time.monotonic()
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        raw("GET", NODES)
    assert time.monotonic() - started >= 0.9
    with pytest.raises(TimeoutError):  # a client with a shorter timeout gives up first
        raw("GET", NODES, timeout=0.3)


def test_offline_site(
    sim: Simulator, site_code: str, raw: Raw, api: Any, control_plane: FakeControlPlane, tmp_path: Path
) -> None:
    # Given a registered device that heartbeats
    sim.unbox(site_code, serial="G6OFFLINE001", mac="94:c6:91:20:21:22", bootstrap_token="t")
    wait_until(
        lambda: (
            len(control_plane.of("/api/v1/device/heartbeat/"))
            and any(d["heartbeats"] for d in sim.summary(site_code)["devices"])
        ),
        what="heartbeats",
    )
    # When the site goes offline
    sim.add_fault("offline", site=site_code, seconds=30)
    # Then connections are dropped without an answer
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        raw("GET", NODES)
    # And devices stop heartbeating and the agent stops syncing
    devices = sim.summary(site_code)["devices"]
    beats = sum(d["heartbeats"] for d in devices)
    missed = {d["serial"]: d["heartbeats_missed"] for d in devices if d["heartbeating"]}
    work = Checkout(sim.site(site_code)["repo_url"], tmp_path / "work")
    work.commit({"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: while-offline\n"}, "offline")
    # (the agent and the devices look twice while offline, and do nothing)
    polls = sim.summary(site_code)["sync"]["offline_polls"]
    wait_until(lambda: sim.summary(site_code)["sync"]["offline_polls"] >= polls + 2, what="two agent polls offline")
    wait_until(
        lambda: all(
            d["heartbeats_missed"] >= missed[d["serial"]] + 2
            for d in sim.summary(site_code)["devices"]
            if d["serial"] in missed
        ),
        what="two heartbeats of every device falling due while offline",
    )
    summary = sim.summary(site_code)
    assert summary["offline"] and summary["sync"]["applied"] is None
    assert sum(d["heartbeats"] for d in summary["devices"]) == beats
    # When it comes back, everything resumes
    sim.clear_faults()
    wait_until(lambda: _status(raw) == 200, what="API back")
    wait_until(lambda: sim.summary(site_code)["sync"]["applied"], what="sync resumed")
    assert client.CoreV1Api(api).read_namespaced_config_map("while-offline", "default")
    wait_until(lambda: sum(d["heartbeats"] for d in sim.summary(site_code)["devices"]) > beats, what="heartbeats back")


def test_offline_for_a_while(sim: Simulator, site_code: str, raw: Raw) -> None:
    sim.add_fault("offline", site=site_code, seconds=0.5)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        raw("GET", NODES)
    wait_until(lambda: _status(raw) == 200, timeout=5, what="the outage to end by itself")
    assert sim.faults() == []


def test_unavailable_workloads(sim: Simulator, site_code: str, api: Any) -> None:
    apps = client.AppsV1Api(api)
    sim.add_fault("unavailable_workloads", site=site_code)
    apps.create_namespaced_deployment(
        "default",
        {
            "metadata": {"name": "never"},
            "spec": {
                "selector": {"matchLabels": {"app": "never"}},
                "template": {
                    "metadata": {"labels": {"app": "never"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]},
                },
            },
        },
    )
    wait_until(lambda: apps.read_namespaced_deployment("never", "default").status.replicas == 1, what="pod created")
    # The pod started (the kubelet had its chance to make it ready) and the Deployment says what it sees.
    wait_until(
        lambda: [p for p in client.CoreV1Api(api).list_namespaced_pod("default", label_selector="app=never").items
                 if p.status.phase == "Running"],
        what="the pod running",
    )  # fmt: skip
    deploy = wait_until(
        lambda: (d := apps.read_namespaced_deployment("never", "default")).status.conditions and d,
        what="the Deployment's conditions",
    )
    assert not deploy.status.available_replicas
    assert {c.type: c.status for c in deploy.status.conditions}["Available"] == "False"
    sim.clear_faults()
    wait_until(
        lambda: apps.read_namespaced_deployment("never", "default").status.available_replicas == 1,
        what="available once the fault is gone",
    )


def _deployment(apps: Any, name: str) -> None:
    apps.create_namespaced_deployment(
        "default",
        {
            "metadata": {"name": name},
            "spec": {
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": f"registry.example/{name}:1"}]},
                },
            },
        },
    )


def _waiting(core: Any, name: str) -> tuple[str, str, int] | None:
    """(phase, the first container's waiting reason, its restarts) of the Deployment's pod, if it has one."""
    pods = core.list_namespaced_pod("default", label_selector=f"app={name}").items
    for pod in pods:
        for container in pod.status.container_statuses or []:
            if container.state and container.state.waiting:
                return pod.status.phase, container.state.waiting.reason, container.restart_count
    return None


def test_crashloop_workloads(sim: Simulator, site_code: str, api: Any) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    sim.add_fault("crashloop_workloads", site=site_code)
    _deployment(apps, "crashy")

    phase, reason, restarts = wait_until(lambda: _waiting(core, "crashy"), what="the container crash-looping")
    assert (phase, reason) == ("Running", "CrashLoopBackOff") and restarts >= 1
    pod: Any = core.list_namespaced_pod("default", label_selector="app=crashy").items[0]
    last = pod.status.container_statuses[0].last_state.terminated
    assert (last.exit_code, last.reason) == (1, "Error")
    assert "back-off 10s restarting failed container=c" in pod.status.container_statuses[0].state.waiting.message
    assert not apps.read_namespaced_deployment("crashy", "default").status.available_replicas

    sim.clear_faults()
    wait_until(
        lambda: apps.read_namespaced_deployment("crashy", "default").status.available_replicas == 1,
        what="available once the fault is gone",
    )
    assert _waiting(core, "crashy") is None


def test_a_running_pod_starts_crashing_and_the_complete_rollout_is_not_timed_out(
    sim: Simulator, site_code: str, api: Any
) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    _deployment(apps, "healthy-then-not")
    wait_until(
        lambda: apps.read_namespaced_deployment("healthy-then-not", "default").status.available_replicas == 1,
        what="available",
    )
    sim.add_fault("crashloop_workloads", site=site_code)
    wait_until(lambda: _waiting(core, "healthy-then-not"), what="the running pod crashing")
    deploy = apps.read_namespaced_deployment("healthy-then-not", "default")
    conditions = {c.type: c for c in deploy.status.conditions}
    assert not deploy.status.available_replicas
    assert conditions["Available"].status == "False"
    # Kubernetes does not time a complete rollout out: the Deployment is unavailable, not "not progressing".
    assert (conditions["Progressing"].status, conditions["Progressing"].reason) == ("True", "NewReplicaSetAvailable")


def test_image_pull_failure(sim: Simulator, site_code: str, api: Any) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    sim.add_fault("image_pull_failure", site=site_code)
    _deployment(apps, "unpullable")

    first = wait_until(lambda: _waiting(core, "unpullable"), what="the pull failing")
    assert first[0] == "Pending" and first[1] in ("ErrImagePull", "ImagePullBackOff")
    wait_until(lambda: (_waiting(core, "unpullable") or ("", "", 0))[1] == "ImagePullBackOff", what="the back-off")
    pod: Any = core.list_namespaced_pod("default", label_selector="app=unpullable").items[0]
    assert (
        pod.status.container_statuses[0].state.waiting.message
        == 'Back-off pulling image "registry.example/unpullable:1"'
    )

    sim.clear_faults()
    wait_until(
        lambda: apps.read_namespaced_deployment("unpullable", "default").status.available_replicas == 1,
        what="available once the image can be pulled",
    )


def test_garbage_answers_200_with_no_kubernetes_object(sim: Simulator, site_code: str, raw: Raw) -> None:
    sim.add_fault("garbage", site=site_code, rate=1.0)
    answers = [raw("GET", NODES) for _ in range(30)]
    assert {answer.status for answer in answers} == {200}
    assert not any(isinstance(answer.body, dict) and answer.body.get("kind") == "NodeList" for answer in answers)
    sim.clear_faults()
    assert raw("GET", NODES).body["kind"] == "NodeList"
