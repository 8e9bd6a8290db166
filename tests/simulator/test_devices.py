"""Virtual devices, up to the HTTP calls they make: registration (and refusal), joining the cluster,
heartbeats with versions and backups, revoked credentials, wipe Jobs, restore Jobs and node death.
The control plane is a test double (conftest.FakeControlPlane) that records what devices send."""

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from simulator.testing import Simulator
from tests.simulator.conftest import FakeControlPlane
from tests.support import wait_until

pytestmark = pytest.mark.integration

REGISTER, HEARTBEAT = "/api/v1/device/register/", "/api/v1/device/heartbeat/"


def _node_ready(api: Any, name: str) -> str | None:
    try:
        node = client.CoreV1Api(api).read_node(name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return next(c.status for c in node.status.conditions if c.type == "Ready")


def _device(sim: Simulator, code: str, serial: str) -> dict[str, Any]:
    return next(d for d in sim.summary(code)["devices"] if d["serial"] == serial)


def _witness(sim: Simulator, code: str, serial: str, mac: str) -> str:
    """Unbox a machine whose heartbeats show time passing at the site; returns its hostname. A check that
    something does not happen waits on the witness first (`_heartbeats_pass`), so it cannot pass merely
    because the machine was too slow for the thing to have happened yet."""
    device = sim.unbox(code, serial=serial, mac=mac, bootstrap_token="boot")
    wait_until(lambda: _device(sim, code, serial)["heartbeats"] >= 1, what=f"the witness {serial} heartbeating")
    return str(device["hostname"])


def _heartbeats_pass(sim: Simulator, code: str, serial: str, n: int = 3) -> None:
    start = _device(sim, code, serial)["heartbeats"]
    wait_until(lambda: _device(sim, code, serial)["heartbeats"] >= start + n, what=f"{n} heartbeats of {serial}")


def _job(
    name: str,
    node: str,
    *,
    labels: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    by_selector: bool = False,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "main",
                "image": "registry.example/edgefleet-agent:1",
                "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
            }
        ],
    }
    if by_selector:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    else:
        spec["nodeName"] = node
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"template": {"metadata": {"labels": labels or {}}, "spec": spec}},
    }


def test_unboxed_device_registers_joins_and_heartbeats(
    sim: Simulator, site_code: str, api: Any, control_plane: FakeControlPlane
) -> None:
    # Given two backups recorded for the site, a day apart
    for day, size in ((1, 1024), (2, 2048)):
        sim.record_backup(
            site_code,
            application="pos-db",
            namespace="pos",
            location=f"s3://backups/pos-db/{day}",
            size=size,
            restore_image="registry.example/pos-restore:1",
            taken_at=f"2026-01-0{day}T00:00:00Z",
        )
    # When a new machine is unboxed
    sim.unbox(site_code, serial="G6UNBOX00001", mac="94:c6:91:01:02:03", bootstrap_token="boot-1", hostname="new-agent")
    # Then it calls home with its identity, token and facts
    register = wait_until(lambda: control_plane.of(REGISTER, serial="G6UNBOX00001"), what="registration")[0]["body"]
    assert register["mac"] == "94:c6:91:01:02:03" and register["bootstrap_token"] == "boot-1"
    assert {"hardware_model", "cpu", "memory_mb"} <= set(register["facts"])
    # And joins the cluster under its hostname, Ready
    wait_until(lambda: _node_ready(api, "new-agent") == "True", what="node joined")
    node = client.CoreV1Api(api).read_node("new-agent")
    assert (node.metadata.labels or {})["edgefleet.io/serial"] == "G6UNBOX00001"
    # And heartbeats with its node credential, versions and the latest backup per application
    device = _device(sim, site_code, "G6UNBOX00001")
    assert device["registered"] and device["state"] == "joined"
    beats = wait_until(
        lambda: [r for r in control_plane.of(HEARTBEAT) if r["body"].get("serial") == "G6UNBOX00001"], what="heartbeat"
    )
    beat = beats[-1]
    assert beat["auth"] == f"Node {control_plane.issued['G6UNBOX00001']}"
    assert beat["body"]["versions"]["k3s"] == "v1.31.4+k3s1" and beat["body"]["versions"]["os"]
    assert beat["body"]["backups"] == [
        {
            "application": "pos-db",
            "namespace": "pos",
            "location": "s3://backups/pos-db/2",
            "size": 2048,
            "restore_image": "registry.example/pos-restore:1",
            "taken_at": "2026-01-02T00:00:00Z",
        }
    ]


def test_refused_device_retries_slowly_and_joins_once_accepted(
    sim: Simulator, site_code: str, api: Any, control_plane: FakeControlPlane
) -> None:
    control_plane.refuse_serials.add("G6REFUSED001")
    sim.unbox(site_code, serial="G6REFUSED001", mac="94:c6:91:0a:0b:0c", bootstrap_token="wrong-site")
    wait_until(lambda: len(control_plane.of(REGISTER, serial="G6REFUSED001")) >= 2, what="a retry after a 403")
    device = _device(sim, site_code, "G6REFUSED001")
    assert device["state"] == "refused" and device["refusals"] >= 2 and not device["registered"]
    assert _node_ready(api, device["hostname"]) is None  # never joined
    control_plane.refuse_serials.discard("G6REFUSED001")
    wait_until(lambda: _node_ready(api, device["hostname"]) == "True", what="joined after acceptance")


def test_revoked_credential_stops_heartbeats(sim: Simulator, site_code: str, control_plane: FakeControlPlane) -> None:
    _witness(sim, site_code, "G6REVOKEWIT1", "94:c6:91:0d:0e:1f")
    sim.unbox(site_code, serial="G6REVOKE0001", mac="94:c6:91:0d:0e:0f", bootstrap_token="boot")
    wait_until(lambda: _device(sim, site_code, "G6REVOKE0001")["heartbeats"] >= 1, what="first heartbeat")
    node_token = control_plane.issued["G6REVOKE0001"]
    control_plane.revoked_tokens.add(node_token)
    wait_until(lambda: _device(sim, site_code, "G6REVOKE0001")["credential_revoked"], what="revocation noticed")
    refused = len(control_plane.heartbeats(node_token))
    wait_until(lambda: not _device(sim, site_code, "G6REVOKE0001")["heartbeating"], what="heartbeats stopped")
    _heartbeats_pass(sim, site_code, "G6REVOKEWIT1")
    assert len(control_plane.heartbeats(node_token)) == refused


def test_wipe_job_wipes_and_the_device_registers_again(
    sim: Simulator, site_code: str, api: Any, control_plane: FakeControlPlane
) -> None:
    sim.unbox(site_code, serial="G6WIPE000001", mac="94:c6:91:10:11:12", bootstrap_token="first", hostname="wipe-me")
    wait_until(lambda: _node_ready(api, "wipe-me") == "True", what="joined")
    first_registrations = len(control_plane.of(REGISTER, serial="G6WIPE000001"))
    # When a wipe Job pinned to the node carries a new bootstrap token
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job(
        "kube-system",
        _job(
            "wipe-wipe-me",
            "wipe-me",
            labels={"edgefleet.io/action": "wipe"},
            env={"EDGEFLEET_BOOTSTRAP_TOKEN": "rejoin-token"},
        ),
    )
    # Then the Job completes, the node goes NotReady and disappears
    wait_until(lambda: batch.read_namespaced_job("wipe-wipe-me", "kube-system").status.succeeded, what="wipe job done")
    wait_until(lambda: _node_ready(api, "wipe-me") in ("False", None), what="node not ready")
    wait_until(
        lambda: (
            _node_ready(api, "wipe-me") is None
            or len(control_plane.of(REGISTER, serial="G6WIPE000001")) > first_registrations
        ),
        what="node gone",
    )
    # And the factory-fresh device registers again with the token from the Job, and rejoins
    again = wait_until(
        lambda: control_plane.of(REGISTER, serial="G6WIPE000001", bootstrap_token="rejoin-token"),
        timeout=15,
        what="re-registration",
    )
    assert again
    wait_until(lambda: _node_ready(api, "wipe-me") == "True", timeout=15, what="rejoined")
    device = _device(sim, site_code, "G6WIPE000001")
    assert device["wipes"] == 1 and [e["event"] for e in device["events"]].count("wiped") == 1
    assert any(j["name"] == "wipe-wipe-me" and j["node"] == "wipe-me" for j in sim.jobs(site_code))


def test_wipe_job_token_from_a_secret_waits_for_it_and_the_secret_goes_with_the_job(
    sim: Simulator, site_code: str, api: Any, control_plane: FakeControlPlane
) -> None:
    sim.unbox(site_code, serial="G6WIPESEC001", mac="94:c6:91:19:1a:1b", bootstrap_token="first", hostname="wipe-sec")
    wait_until(lambda: _node_ready(api, "wipe-sec") == "True", what="joined")
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    # Given a wipe Job whose token is a reference to a Secret that does not exist yet (as edgefleet creates them)
    body = _job("wipe-sec", "wipe-sec", labels={"edgefleet.io/action": "wipe"})
    body["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "EDGEFLEET_NODE_ID", "value": "7"},
        {
            "name": "EDGEFLEET_BOOTSTRAP_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "wipe-sec", "key": "EDGEFLEET_BOOTSTRAP_TOKEN"}},
        },
    ]
    job = batch.create_namespaced_job("kube-system", body)

    # Then its pod waits for the Secret, as a kubelet does, and nothing is wiped yet
    def waiting_reason() -> str | None:
        pods = core.list_namespaced_pod("kube-system", label_selector="job-name=wipe-sec").items
        statuses = [c for p in pods for c in (p.status.container_statuses or [])]
        return next((c.state.waiting.reason for c in statuses if c.state and c.state.waiting), None)

    assert wait_until(waiting_reason, what="pod waiting for its secret") == "CreateContainerConfigError"
    assert _device(sim, site_code, "G6WIPESEC001")["wipes"] == 0

    # When the Secret owned by the Job appears (stringData, as the API server accepts it)
    owner = client.V1OwnerReference(api_version="batch/v1", kind="Job", name="wipe-sec", uid=job.metadata.uid)
    core.create_namespaced_secret(
        "kube-system",
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="wipe-sec", owner_references=[owner]),
            string_data={"EDGEFLEET_BOOTSTRAP_TOKEN": "token-from-secret"},
        ),
    )

    # Then the Job runs, and the wiped device registers again with the token the Secret held
    wait_until(
        lambda: control_plane.of(REGISTER, serial="G6WIPESEC001", bootstrap_token="token-from-secret"),
        timeout=20,
        what="re-registration with the secret's token",
    )
    stored = core.read_namespaced_secret("wipe-sec", "kube-system")
    assert stored.data == {"EDGEFLEET_BOOTSTRAP_TOKEN": "dG9rZW4tZnJvbS1zZWNyZXQ="} and stored.type == "Opaque"
    logged = next(j for j in sim.jobs(site_code) if j["name"] == "wipe-sec")
    assert logged["env"] == {"EDGEFLEET_NODE_ID": "7"}  # the log has the reference, never the value
    assert logged["env_from"] == {"EDGEFLEET_BOOTSTRAP_TOKEN": "wipe-sec/EDGEFLEET_BOOTSTRAP_TOKEN"}

    # And deleting the Job collects its Secret
    batch.delete_namespaced_job("wipe-sec", "kube-system")

    def secret_gone() -> bool:
        try:
            core.read_namespaced_secret("wipe-sec", "kube-system")
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_until(secret_gone, what="the Job's secret collected")


def test_a_secret_with_invalid_base64_or_an_env_with_value_and_reference_is_refused(api: Any) -> None:
    core = client.CoreV1Api(api)
    try:
        core.create_namespaced_secret(
            "default", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bad"}, "data": {"k": "!!"}}
        )
    except ApiException as exc:
        assert exc.status == 422 and "not base64" in str(exc.body)
    else:
        raise AssertionError("a Secret with invalid base64 data was accepted")
    body = _job("both", "nowhere", env={"A": "1"})
    body["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"] = {
        "secretKeyRef": {"name": "s", "key": "A"}
    }
    try:
        client.BatchV1Api(api).create_namespaced_job("default", body)
    except ApiException as exc:
        assert exc.status == 422 and "may not be specified" in str(exc.body)
    else:
        raise AssertionError("an env entry with both value and valueFrom was accepted")


def test_wipe_without_token_stays_off(
    sim: Simulator, site_code: str, api: Any, control_plane: FakeControlPlane
) -> None:
    sim.unbox(site_code, serial="G6WIPEOFF001", mac="94:c6:91:13:14:15", bootstrap_token="t", hostname="wipe-off")
    wait_until(lambda: _node_ready(api, "wipe-off") == "True", what="joined")
    client.BatchV1Api(api).create_namespaced_job(
        "kube-system", _job("wipe-off", "wipe-off", labels={"edgefleet.io/action": "wipe"}, by_selector=True)
    )
    wait_until(lambda: _node_ready(api, "wipe-off") is None, timeout=15, what="node gone")
    wait_until(lambda: _device(sim, site_code, "G6WIPEOFF001")["state"] == "off", what="device off")
    # It has passed the point where a machine with a token reboots and registers again.
    wait_until(
        lambda: any(e["event"] == "stays_off" for e in _device(sim, site_code, "G6WIPEOFF001")["events"]),
        what="the device deciding to stay off after the reboot delay",
    )
    assert _device(sim, site_code, "G6WIPEOFF001")["state"] == "off"
    assert len(control_plane.of(REGISTER, serial="G6WIPEOFF001")) == 1


def test_node_death(sim: Simulator, site_code: str, api: Any, control_plane: FakeControlPlane) -> None:
    sim.unbox(site_code, serial="G6DEATH00001", mac="94:c6:91:16:17:18", bootstrap_token="t", hostname="mortal")
    wait_until(lambda: _node_ready(api, "mortal") == "True", what="joined")
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)

    def pods_ready() -> list[str]:
        pods = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=mortal").items
        return [next((c.status for c in p.status.conditions or [] if c.type == "Ready"), "None") for p in pods]

    wait_until(lambda: pods_ready() == ["True"], what="a running pod on the node")
    # When the node dies
    fault = sim.add_fault("node_death", node="mortal")
    # Then its Ready condition is Unknown, its pods are not ready, its heartbeats stop and no job runs there
    wait_until(lambda: _node_ready(api, "mortal") == "Unknown", what="node unknown")
    wait_until(lambda: pods_ready() == ["False"], what="pods unready")
    device = _device(sim, site_code, "G6DEATH00001")
    batch.create_namespaced_job("default", _job("restore-on-dead", "mortal", env={"BACKUP_LOCATION": "s3://b/1"}))
    # (meanwhile the same Job runs on a live node, and two heartbeats of the dead one fall due)
    live = next(n for n in sim.site(site_code)["nodes"] if _node_ready(api, n["hostname"]) == "True")["hostname"]
    batch.create_namespaced_job("default", _job("restore-on-live", live, env={"BACKUP_LOCATION": "s3://b/1"}))
    wait_until(lambda: batch.read_namespaced_job("restore-on-live", "default").status.succeeded, what="live job ran")
    wait_until(
        lambda: _device(sim, site_code, "G6DEATH00001")["heartbeats_missed"] >= device["heartbeats_missed"] + 2,
        what="two heartbeats of the dead machine falling due",
    )
    beats = device["heartbeats"]
    assert _device(sim, site_code, "G6DEATH00001")["heartbeats"] == beats
    assert not batch.read_namespaced_job("restore-on-dead", "default").status.succeeded
    assert not [j for j in sim.jobs(site_code) if j["name"] == "restore-on-dead"]
    # When it comes back, the job runs
    sim.remove_fault(fault)
    wait_until(lambda: _node_ready(api, "mortal") == "True", what="node back")
    wait_until(lambda: batch.read_namespaced_job("restore-on-dead", "default").status.succeeded, what="job ran")
    logged = [j for j in sim.jobs(site_code) if j["name"] == "restore-on-dead"]
    assert logged[0]["node"] == "mortal" and logged[0]["env"] == {"BACKUP_LOCATION": "s3://b/1"}


def test_device_joins_under_the_name_the_control_plane_gives(
    sim: Simulator, site_code: str, api: Any, control_plane: FakeControlPlane
) -> None:
    control_plane.names["G6NAMED00001"] = "assigned-name"
    sim.unbox(site_code, serial="G6NAMED00001", mac="94:c6:91:30:31:32", bootstrap_token="t", hostname="box-label")
    wait_until(lambda: _node_ready(api, "assigned-name") == "True", what="joined under the assigned name")
    labels = client.CoreV1Api(api).read_node("assigned-name").metadata.labels or {}
    assert labels["edgefleet.io/node-id"].isdigit() and labels["kubernetes.io/hostname"] == "assigned-name"
    assert _node_ready(api, "box-label") is None


def test_a_preinstalled_machine_obeys_a_wipe_and_calls_home(
    sim: Simulator, site_code: str, api: Any, control_plane: FakeControlPlane
) -> None:
    # Given a machine listed in fleet.json (installed before edgefleet knew it: no node credential)
    machine = sim.site(site_code)["nodes"][-1]
    assert machine["role"] == "agent" and not _device(sim, site_code, machine["serial"])["registered"]
    # When a wipe Job with a bootstrap token runs on it
    client.BatchV1Api(api).create_namespaced_job(
        "kube-system",
        _job(
            "wipe-preinstalled",
            machine["hostname"],
            labels={"edgefleet.io/action": "wipe"},
            env={"EDGEFLEET_BOOTSTRAP_TOKEN": "fresh"},
        ),
    )
    # Then it registers with the control plane as a fresh machine and rejoins
    register = wait_until(lambda: control_plane.of(REGISTER, serial=machine["serial"]), timeout=15, what="register")
    assert register[0]["body"]["bootstrap_token"] == "fresh" and register[0]["body"]["mac"] == machine["mac"]
    wait_until(lambda: _node_ready(api, machine["hostname"]) == "True", timeout=15, what="rejoined")
    wait_until(lambda: _device(sim, site_code, machine["serial"])["heartbeats"] >= 1, what="heartbeats")
