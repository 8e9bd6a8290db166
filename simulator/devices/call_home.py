"""A machine calling home to the control plane (device contract in docs/SIMULATOR.md): register with its
bootstrap token and facts, then heartbeat with the node credential it got until that is revoked."""

import asyncio
import hashlib
from typing import TYPE_CHECKING

import aiohttp

from simulator.devices.machine import KERNEL_VERSION, OS_IMAGE, Device
from simulator.fleetgen import HARDWARE

if TYPE_CHECKING:
    from simulator.site import Site


async def register(site: "Site", device: Device) -> str:
    """Call the control plane's register endpoint once: "ok", "refused" or "error"; K3s then joins under the
    node name the control plane handed out."""
    fleet = site.fleet
    body = {
        "serial": device.serial,
        "mac": device.mac,
        "bootstrap_token": device.bootstrap_token,
        "hostname": device.hostname,
        "role": device.role,
        "site": site.code,
        "facts": {
            "hardware_model": HARDWARE[int(hashlib.sha256(device.serial.encode()).hexdigest(), 16) % len(HARDWARE)],
            "cpu": "Intel Core i5-1135G7",
            "cpu_count": 4,
            "memory_mb": 16384,
            "model": "NUC11TNHi5",
            "cpus": 4,
            "disk_gb": 512,
            "os": OS_IMAGE,
            "k3s_version": site.node_k3s_version(device.hostname),
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
        site.devices.by_hostname.pop(device.hostname, None)
        device.record("renamed", old=device.hostname, new=name)
        device.hostname = name
        site.devices.by_hostname[name] = device
    device.credential_revoked = False
    device.record("registered", node_id=device.node_id)
    return "ok"


async def heartbeat_loop(site: "Site", device: Device) -> None:
    """Heartbeat with the device's node credential until it leaves the cluster or the credential is revoked."""
    config, fleet = site.fleet.config, site.fleet
    device.heartbeating = True
    try:
        while device.state == "joined" and device.node_token:
            if not (site.offline() or device.dead):
                body = {
                    "versions": {
                        "k3s": site.node_k3s_version(device.hostname),
                        "os": OS_IMAGE,
                        "kernel": KERNEL_VERSION,
                    },
                    "backups": site.latest_backups(),
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
