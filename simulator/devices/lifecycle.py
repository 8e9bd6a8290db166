"""`Devices`: the machines of one site and what they do to its cluster: they join as Nodes, renew their
Leases, die and revive with node_death faults, are unboxed through the control API to call home, and
are wiped by a completed wipe Job (then come back factory-fresh and register again if the Job's
process had `EDGEFLEET_BOOTSTRAP_TOKEN`)."""

import asyncio
from typing import TYPE_CHECKING, Any

from simulator.devices.call_home import heartbeat_loop, register
from simulator.devices.machine import Device, micro_time
from simulator.devices.objects import lease_object, node_object
from simulator.errors import ApiError
from simulator.resources import BY_PLURAL
from simulator.store import now_iso

if TYPE_CHECKING:
    from simulator.site import Site


NODES, LEASES = BY_PLURAL["nodes"], BY_PLURAL["leases"]
WIPE_LABEL = ("edgefleet.io/action", "wipe")
TOKEN_ENV = "EDGEFLEET_BOOTSTRAP_TOKEN"  # noqa: S105 - the name of an env var, not a secret


class Devices:
    """The devices of one site and what they do to its cluster."""

    def __init__(self, site: "Site"):
        self.site = site
        self.by_hostname: dict[str, Device] = {}

    # --- the cluster side: the Node and its Lease ------------------------------------------------------

    def join(self, device: Device) -> None:
        """The device's kubelet registers its Node (Ready) and starts renewing its Lease."""
        api, store = self.site.api, self.site.store
        self.by_hostname[device.hostname] = device
        device.state = "joined"
        node = node_object(device, self.site.node_k3s_version(device.hostname))
        existing = store.get("nodes", "", device.hostname)
        if existing is None:
            node = api.create(NODES, None, node)
        else:
            current = existing.load()
            current["status"] = node["status"]
            current["metadata"].setdefault("labels", {}).update(node["metadata"]["labels"])
            current.setdefault("spec", {}).pop("taints", None)
            node = api.write(NODES, current) or current
        lease = lease_object(device, node["metadata"]["uid"])
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
            outcome = await register(self.site, device)
            if outcome == "ok":
                break
            await asyncio.sleep(config.refused_retry_seconds if outcome == "refused" else config.retry_seconds)
        if device.state != "registering":
            return
        self.join(device)
        await heartbeat_loop(self.site, device)

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
