"""One simulated machine (`Device`): its identity, state, counters and recent events."""

import asyncio
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from simulator.store import now_iso

OS_IMAGE = "Ubuntu 22.04.4 LTS"
KERNEL_VERSION = "5.15.0-105-generic"


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
