"""The virtual machines of one site: they join the cluster as Nodes, renew their leases, and, when
unboxed through the control API, call the control plane to register and then heartbeat.

Device contract (see docs/SIMULATOR.md): `POST {control_plane}/api/v1/device/register/` with
`{"serial", "mac", "bootstrap_token", "facts"}` -> 200 `{"node_id", "node_token", "k3s": {...}}`; a 403
means refused (quarantined): the device records it and retries slowly. Then `POST .../device/heartbeat/`
with `Authorization: Node <token>` every few seconds; a 401/403 means the credential was revoked and the
device stops heartbeating with it. A completed wipe Job pinned to the device's node wipes it: the Node
goes NotReady then away, and after a short delay the device comes back factory-fresh and registers
again if the Job's process had `EDGEFLEET_BOOTSTRAP_TOKEN` in its environment (a literal value or, as
edgefleet sends it, a reference to a Secret).
"""

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp

from simulator.errors import ApiError
from simulator.fleetgen import HARDWARE, K3S_VERSION
from simulator.resources import BY_PLURAL
from simulator.store import now_iso

if TYPE_CHECKING:
    from simulator.site import Site

log = logging.getLogger(__name__)

NODES, LEASES = BY_PLURAL["nodes"], BY_PLURAL["leases"]
OS_IMAGE = "Ubuntu 22.04.4 LTS"
WIPE_LABEL = ("edgefleet.io/action", "wipe")
TOKEN_ENV = "EDGEFLEET_BOOTSTRAP_TOKEN"  # noqa: S105 - the name of an env var, not a secret


def micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(eq=False)
class Device:
    """One machine. `state`: joined (a Node in the cluster), registering, refused, wiping, off."""

    serial: str
    mac: str
    hostname: str
    role: str
    state: str = "off"
    preinstalled: bool = False
    bootstrap_token: str | None = None
    node_id: Any = None
    node_token: str | None = None
    k3s: dict[str, Any] = field(default_factory=dict)
    heartbeating: bool = False
    credential_revoked: bool = False
    dead: bool = False
    registrations: int = 0
    refusals: int = 0
    heartbeats: int = 0
    # Heartbeats due but not sent, the site being offline or the machine dead (a test waits on them to
    # know a heartbeat could have happened and did not).
    heartbeats_missed: int = 0
    last_heartbeat_status: int | None = None
    wipes: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    # The Lease as last written, so renewals need not parse it again (valid while its rv matches).
    lease: dict[str, Any] | None = None
    lease_rv: int = 0

    def record(self, what: str, **details: Any) -> None:
        self.events.append({"at": now_iso(), "event": what, **details})
        del self.events[:-50]

    @property
    def ip(self) -> str:
        digest = hashlib.sha256(self.serial.encode()).digest()
        return f"10.0.{digest[0]}.{digest[1] % 250 + 2}"

    def summary(self) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "mac": self.mac,
            "hostname": self.hostname,
            "role": self.role,
            "state": self.state,
            "preinstalled": self.preinstalled,
            "node_id": self.node_id,
            "registered": self.node_token is not None,
            "heartbeating": self.heartbeating,
            "credential_revoked": self.credential_revoked,
            "dead": self.dead,
            "registrations": self.registrations,
            "refusals": self.refusals,
            "heartbeats": self.heartbeats,
            "heartbeats_missed": self.heartbeats_missed,
            "last_heartbeat_status": self.last_heartbeat_status,
            "wipes": self.wipes,
            "events": self.events[-10:],
        }


class Devices:
    """The devices of one site and what they do to its cluster."""

    def __init__(self, site: "Site"):
        self.site = site
        self.by_hostname: dict[str, Device] = {}

    # --- the cluster side: Node and Lease objects ----------------------------------------------------

    def node_object(self, device: Device) -> dict[str, Any]:
        labels = {
            "kubernetes.io/hostname": device.hostname,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": "k3s",
            "edgefleet.io/serial": device.serial,
        }
        for item in device.k3s.get("node_labels") or []:  # K3s's --node-label k=v
            if isinstance(item, str) and "=" in item:
                key, value = item.split("=", 1)
                labels[key] = value
        if device.role == "server":
            labels.update({"node-role.kubernetes.io/control-plane": "true", "node-role.kubernetes.io/master": "true"})
        digest = hashlib.sha256(device.serial.encode()).hexdigest()
        index = int(digest[:2], 16)
        resources = {"cpu": "4", "memory": "16262796Ki", "pods": "110", "ephemeral-storage": "490617784Ki"}
        now = now_iso()
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": device.hostname,
                "labels": labels,
                "annotations": {
                    "k3s.io/hostname": device.hostname,
                    "k3s.io/internal-ip": device.ip,
                    "edgefleet.io/mac": device.mac,
                    "node.alpha.kubernetes.io/ttl": "0",
                },
            },
            "spec": {
                "podCIDR": f"10.42.{index}.0/24",
                "podCIDRs": [f"10.42.{index}.0/24"],
                "providerID": f"k3s://{device.hostname}",
            },
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "conditions": [
                    _node_condition(
                        "MemoryPressure",
                        "False",
                        "KubeletHasSufficientMemory",
                        "kubelet has sufficient memory available",
                        now,
                    ),
                    _node_condition(
                        "DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure", now
                    ),
                    _node_condition(
                        "PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available", now
                    ),
                    _node_condition("Ready", "True", "KubeletReady", "kubelet is posting ready status", now),
                ],
                "addresses": [
                    {"type": "InternalIP", "address": device.ip},
                    {"type": "Hostname", "address": device.hostname},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {
                    "machineID": digest[:32],
                    "systemUUID": f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}",
                    "bootID": hashlib.sha256(f"{device.serial}{device.wipes}".encode()).hexdigest()[:32],
                    "kernelVersion": "5.15.0-105-generic",
                    "osImage": OS_IMAGE,
                    "containerRuntimeVersion": "containerd://1.7.23-k3s2",
                    "kubeletVersion": K3S_VERSION,
                    "kubeProxyVersion": K3S_VERSION,
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                },
            },
        }

    def join(self, device: Device) -> None:
        """The device's kubelet registers its Node (Ready) and starts renewing its Lease."""
        api, store = self.site.api, self.site.store
        self.by_hostname[device.hostname] = device
        device.state = "joined"
        node = self.node_object(device)
        existing = store.get("nodes", "", device.hostname)
        if existing is None:
            node = api.create(NODES, None, node)
        else:
            current = existing.load()
            current["status"] = node["status"]
            current["metadata"].setdefault("labels", {}).update(node["metadata"]["labels"])
            current.setdefault("spec", {}).pop("taints", None)
            node = api.write(NODES, current) or current
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": device.hostname,
                "namespace": "kube-node-lease",
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": device.hostname, "uid": node["metadata"]["uid"]}
                ],
            },
            "spec": {"holderIdentity": device.hostname, "leaseDurationSeconds": 40, "renewTime": micro_time()},
        }
        if store.get("leases", "kube-node-lease", device.hostname) is None:
            api.create(LEASES, "kube-node-lease", lease)
        device.record("joined", node=device.hostname)

    def set_ready(self, device: Device, status: str, reason: str, message: str) -> None:
        node = self.site.store.load("nodes", "", device.hostname)
        if node is None:
            return
        now = now_iso()
        conditions = node.setdefault("status", {}).setdefault("conditions", [])
        for cond in conditions:
            if cond.get("type") == "Ready":
                if cond.get("status") != status:
                    cond["lastTransitionTime"] = now
                cond.update(status=status, reason=reason, message=message, lastHeartbeatTime=now)
        spec = node.setdefault("spec", {})
        taints = [t for t in spec.get("taints") or [] if not str(t.get("key", "")).startswith("node.kubernetes.io/")]
        if status == "Unknown":
            taints += [
                {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule", "timeAdded": now},
                {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": now},
            ]
        elif status == "False":
            taints.append({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule", "timeAdded": now})
        if taints:
            spec["taints"] = taints
        else:
            spec.pop("taints", None)
        self.site.api.write(NODES, node)

    def renew_leases(self) -> None:
        """Called every lease interval by the fleet's ticker (not per site timers, to keep idle cheap).

        The renewal only moves `spec.renewTime`, so it is written straight to the store (no read-back
        and comparison as other writes get): at 3000 sites this is the bulk of the idle work."""
        if self.site.offline():
            return
        store = self.site.store
        for device in self.by_hostname.values():
            if device.state != "joined" or device.dead:
                continue
            current = store.get("leases", "kube-node-lease", device.hostname)
            if current is None:
                continue
            if device.lease is None or device.lease_rv != current.rv:
                device.lease = current.load()
            device.lease["spec"]["renewTime"] = micro_time()
            device.lease_rv = store.put("leases", device.lease).rv

    # --- faults -----------------------------------------------------------------------------------

    def apply_faults(self) -> None:
        """Kill or revive devices as node_death faults come and go."""
        dead = self.site.faults.dead_nodes(self.site.code)
        for device in self.by_hostname.values():
            should_be_dead = device.hostname in dead
            if should_be_dead == device.dead:
                continue
            device.dead = should_be_dead
            device.record("died" if should_be_dead else "revived")
            if device.state != "joined":
                continue
            if should_be_dead:
                self.set_ready(device, "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
            else:
                self.set_ready(device, "True", "KubeletReady", "kubelet is posting ready status")

    # --- the control-plane side -------------------------------------------------------------------

    def bootstrap(self, specs: list[Any]) -> None:
        """The machines a site starts with: installed already, in the cluster, without control-plane credentials."""
        for spec in specs:
            device = Device(spec.serial, spec.mac, spec.hostname, spec.role, preinstalled=True)
            self.join(device)

    def unbox(self, *, serial: str, mac: str, role: str, hostname: str | None, bootstrap_token: str | None) -> Device:
        for existing in self.by_hostname.values():
            if existing.serial == serial and existing.state != "off":
                raise ApiError(409, f"device {serial} is already running at {self.site.code} ({existing.state})")
        hostname = hostname or f"{self.site.code.lower()}-{'srv' if role == 'server' else 'agt'}-{serial[-4:].lower()}"
        device = self.by_hostname.get(hostname)
        if device is None or device.serial != serial:
            device = Device(serial, mac, hostname, role)
        self.by_hostname[hostname] = device
        device.bootstrap_token = bootstrap_token
        device.record("unboxed")
        self._start(device)
        return device

    def _start(self, device: Device) -> None:
        if self.site.fleet.control_plane is None:
            # No control plane to call home to: the machine joins as a pre-provisioned one would.
            device.record("no control plane configured: joining directly")
            self.join(device)
            return
        device.state = "registering"
        device.task = self.site.spawn(self._lifecycle(device))

    async def _lifecycle(self, device: Device) -> None:
        config = self.site.fleet.config
        while device.state in ("registering", "refused"):
            if self.site.offline() or device.dead:
                await asyncio.sleep(config.retry_seconds)
                continue
            outcome = await self._register(device)
            if outcome == "ok":
                break
            await asyncio.sleep(config.refused_retry_seconds if outcome == "refused" else config.retry_seconds)
        if device.state != "registering":
            return
        self.join(device)
        await self._heartbeat_loop(device)

    async def _register(self, device: Device) -> str:
        fleet = self.site.fleet
        body = {
            "serial": device.serial,
            "mac": device.mac,
            "bootstrap_token": device.bootstrap_token,
            "hostname": device.hostname,
            "role": device.role,
            "site": self.site.code,
            "facts": {
                "hardware_model": HARDWARE[int(hashlib.sha256(device.serial.encode()).hexdigest(), 16) % len(HARDWARE)],
                "cpu": "Intel Core i5-1135G7",
                "cpu_count": 4,
                "memory_mb": 16384,
                "model": "NUC11TNHi5",
                "cpus": 4,
                "disk_gb": 512,
                "os": OS_IMAGE,
                "k3s_version": K3S_VERSION,
                "hostname": device.hostname,
                "ip": device.ip,
            },
        }
        url = f"{fleet.control_plane}/api/v1/device/register/"
        device.registrations += 1
        try:
            async with fleet.http().post(url, json=body) as response:
                status = response.status
                data = await response.json(content_type=None) if status == 200 else await response.text()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            device.record("register_error", error=f"{type(exc).__name__}: {exc}")
            return "error"
        if status == 403:
            device.state = "refused"
            device.refusals += 1
            device.record("register_refused", status=status, detail=str(data)[:200])
            return "refused"
        if status != 200 or not isinstance(data, dict) or not data.get("node_token"):
            device.state = "registering"
            device.record("register_failed", status=status, detail=str(data)[:200])
            return "error"
        device.state = "registering"
        device.node_id = data.get("node_id")
        device.node_token = str(data["node_token"])
        k3s = data.get("k3s")
        device.k3s = k3s if isinstance(k3s, dict) else {}
        # K3s joins under the node name the control plane hands out (k3s.node_name, else hostname).
        name = device.k3s.get("node_name") or data.get("hostname")
        if isinstance(name, str) and name and name != device.hostname:
            self.by_hostname.pop(device.hostname, None)
            device.record("renamed", old=device.hostname, new=name)
            device.hostname = name
            self.by_hostname[name] = device
        device.credential_revoked = False
        device.record("registered", node_id=device.node_id)
        return "ok"

    async def _heartbeat_loop(self, device: Device) -> None:
        config, fleet = self.site.fleet.config, self.site.fleet
        device.heartbeating = True
        try:
            while device.state == "joined" and device.node_token:
                if not (self.site.offline() or device.dead):
                    body = {
                        "versions": {"k3s": K3S_VERSION, "os": OS_IMAGE, "kernel": "5.15.0-105-generic"},
                        "backups": self.site.latest_backups(),
                        "hostname": device.hostname,
                        "serial": device.serial,
                    }
                    headers = {"Authorization": f"Node {device.node_token}"}
                    try:
                        async with fleet.http().post(
                            f"{fleet.control_plane}/api/v1/device/heartbeat/", json=body, headers=headers
                        ) as response:
                            device.last_heartbeat_status = response.status
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        device.record("heartbeat_error", error=f"{type(exc).__name__}: {exc}")
                    else:
                        device.heartbeats += 1
                        if response.status in (401, 403):
                            device.credential_revoked = True
                            device.node_token = None
                            device.record("credential_revoked", status=response.status)
                            return
                else:
                    device.heartbeats_missed += 1
                await asyncio.sleep(config.heartbeat_seconds)
        finally:
            device.heartbeating = False

    # --- wipe ---------------------------------------------------------------------------------------

    def job_finished(self, job: dict[str, Any], pod: dict[str, Any], env: dict[str, str]) -> None:
        """A Job pod completed on a node; a wipe Job wipes that node's device. `env` is what the pod's
        process got (the kubelet resolved its Secret references): the rejoin token is read from there."""
        labels = {**(job["metadata"].get("labels") or {})}
        labels.update(((job.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {})
        if labels.get(WIPE_LABEL[0]) != WIPE_LABEL[1]:
            return
        device = self.by_hostname.get((pod.get("spec") or {}).get("nodeName", ""))
        if device is None or device.state != "joined":
            return
        token = env.get(TOKEN_ENV) or None
        device.state = "wiping"
        device.record("wipe_started", job=job["metadata"]["name"], rejoin=token is not None)
        self.site.spawn(self._wipe(device, token))

    async def _wipe(self, device: Device, token: str | None) -> None:
        config = self.site.fleet.config
        device.wipes += 1
        device.node_token = None
        if device.task is not None and device.task is not asyncio.current_task():
            device.task.cancel()
        self.set_ready(device, "False", "KubeletNotReady", "device is being wiped")
        await asyncio.sleep(config.node_gone_seconds)
        for plural, ns in (("nodes", ""), ("leases", "kube-node-lease")):
            try:
                self.site.api.delete(BY_PLURAL[plural], ns, device.hostname)
            except ApiError:
                pass  # the control plane may have deleted the Node already
        device.state = "off"
        device.record("wiped")
        await asyncio.sleep(config.reboot_seconds)
        if token is None or device.state != "off":
            device.record("stays_off")
            return
        device.bootstrap_token = token
        device.preinstalled = False
        device.record("factory_fresh")
        self._start(device)


def _node_condition(kind: str, status: str, reason: str, message: str, now: str) -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }
