"""Fault injection: what can go wrong at a site, per site or fleet-wide, as a rate.

A fault is `{"site": code or None (all sites), "kind", "rate", "node", "seconds"}`. Kinds:

- `api_error`: the site's API answers 500 or 503 (a `Status` body), with probability `rate`.
- `throttle`: 429 with `Retry-After: seconds` (default 1).
- `slow`: `seconds` (default 0.5) of added latency before answering.
- `timeout`: the request is held `seconds` (default 60, at most 300) and the connection closed unanswered.
- `garbage`: the site's API answers 200 with a body that is no Kubernetes object: an HTML error page, a
  truncated JSON document, `{}` or random bytes (a captive portal, a broken proxy, a confused agent).
- `offline`: connections are dropped without an answer, the GitOps agent stops and devices stop
  heartbeating; `seconds`, when given, is how long the site stays offline.
- `sync_failure`: the GitOps agent reports Ready False and applies nothing.
- `sync_delay`: applying a new revision waits a random delay, exponentially distributed with mean `seconds`.
- `unavailable_workloads`: Deployment pods run but never become ready, so Deployments never become
  Available (and report ProgressDeadlineExceeded after their `progressDeadlineSeconds`).
- `crashloop_workloads`: Deployment pods' containers exit as soon as they start and are restarted with
  a growing back-off: `CrashLoopBackOff` (a pod that was running starts crashing too).
- `image_pull_failure`: new Deployment pods cannot pull their image: `ErrImagePull`, then
  `ImagePullBackOff`, and they stay Pending.
- `upgrade_fail`: a system-upgrade-controller Job upgrading a node at the site (only `node`, when given)
  fails after the drain, every retry too: the Job ends Failed (BackoffLimitExceeded), the Plan reports
  JobFailed, and the node stays cordoned on its old version.
- `upgrade_hang`: the same Job never finishes (until its activeDeadlineSeconds fails it: DeadlineExceeded).
- `node_death`: the device `node` dies (Ready Unknown, no leases, heartbeats or jobs) until the fault is
  removed or `seconds` pass; `rate` is not used.
"""

import itertools
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = (
    "api_error",
    "throttle",
    "slow",
    "timeout",
    "garbage",
    "offline",
    "sync_failure",
    "sync_delay",
    "unavailable_workloads",
    "crashloop_workloads",
    "image_pull_failure",
    "node_death",
    "upgrade_fail",
    "upgrade_hang",
)
# Kinds whose `node` names the one node they strike (optional for the upgrade faults).
UPGRADE_KINDS = ("upgrade_fail", "upgrade_hang")
API_KINDS = ("offline", "timeout", "throttle", "api_error", "garbage", "slow")
MAX_TIMEOUT_SECONDS = 300.0


class FaultError(ValueError):
    """A fault description that cannot be accepted; the message says why."""


@dataclass
class Fault:
    """One active fault."""

    id: str
    kind: str
    site: str | None
    rate: float
    node: str | None = None
    seconds: float | None = None
    created_at: float = field(default_factory=time.time)
    expires_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


class Faults:
    """The active faults of the fleet. `roll` answers "does this fault strike now?" for one event."""

    def __init__(self, seed: int = 0):
        self._faults: dict[str, Fault] = {}
        self._ids = itertools.count(1)
        self.random = random.Random(seed)  # noqa: S311 - fault dice, not secrets
        self.version = 0  # bumped on every change, so sites can cache what applies to them

    def add(
        self,
        *,
        kind: Any,
        site: Any = None,
        rate: Any = 1.0,
        node: Any = None,
        seconds: Any = None,
        known_sites: set[str] | None = None,
        known_nodes: dict[str, str] | None = None,
    ) -> Fault:
        """Validate and add a fault. `known_nodes` maps hostname -> site code (for node_death)."""
        if kind not in KINDS:
            raise FaultError(f"unknown fault kind {kind!r}; expected one of {', '.join(KINDS)}")
        if site is not None and (not isinstance(site, str) or (known_sites is not None and site not in known_sites)):
            raise FaultError(f"unknown site {site!r}")
        if rate is None:
            rate = 1.0
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= float(rate) <= 1.0:
            raise FaultError(f"rate must be a number between 0.0 and 1.0, not {rate!r}")
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0):
            raise FaultError(f"seconds must be a non-negative number, not {seconds!r}")
        if kind == "node_death":
            if not node or not isinstance(node, str):
                raise FaultError("node_death needs the hostname of the node that dies in 'node'")
            if known_nodes is not None:
                if node not in known_nodes:
                    raise FaultError(f"unknown node {node!r}")
                if site is not None and known_nodes[node] != site:
                    raise FaultError(f"node {node!r} is not at site {site!r}")
                site = known_nodes[node]
        elif kind in UPGRADE_KINDS and node is not None:
            if not isinstance(node, str) or (known_nodes is not None and node not in known_nodes):
                raise FaultError(f"unknown node {node!r}")
            if known_nodes is not None:
                if site is not None and known_nodes[node] != site:
                    raise FaultError(f"node {node!r} is not at site {site!r}")
                site = known_nodes[node]
        elif node is not None:
            raise FaultError(f"'node' only applies to node_death, not to {kind}")
        if kind == "timeout" and seconds is not None:
            seconds = min(float(seconds), MAX_TIMEOUT_SECONDS)
        expires = None
        if kind in ("offline", "node_death") and seconds is not None:
            expires = time.time() + float(seconds)
        fault = Fault(
            id=f"f{next(self._ids)}",
            kind=kind,
            site=site,
            rate=float(rate),
            node=node,
            seconds=float(seconds) if seconds is not None else None,
            expires_at=expires,
        )
        self._faults[fault.id] = fault
        self.version += 1
        return fault

    def remove(self, fault_id: str) -> Fault | None:
        fault = self._faults.pop(fault_id, None)
        if fault:
            self.version += 1
        return fault

    def clear(self) -> list[Fault]:
        gone = list(self._faults.values())
        self._faults.clear()
        self.version += 1
        return gone

    def all(self) -> list[Fault]:
        self.expire()
        return list(self._faults.values())

    def expire(self) -> list[Fault]:
        now = time.time()
        gone = [f for f in self._faults.values() if f.expired(now)]
        for fault in gone:
            del self._faults[fault.id]
        if gone:
            self.version += 1
        return gone

    def __bool__(self) -> bool:
        return bool(self._faults)

    def active(self, site: str, kind: str) -> list[Fault]:
        if not self._faults:
            return []
        now = time.time()
        return [f for f in self._faults.values() if f.kind == kind and f.site in (None, site) and not f.expired(now)]

    def roll(self, site: str, kind: str) -> Fault | None:
        """The first active fault of this kind that strikes this time (each rolls its own dice)."""
        for fault in self.active(site, kind):
            if fault.rate >= 1.0 or self.random.random() < fault.rate:
                return fault
        return None

    def offline(self, site: str) -> bool:
        return self.roll(site, "offline") is not None

    def dead_nodes(self, site: str) -> set[str]:
        return {f.node for f in self.active(site, "node_death") if f.node}

    def upgrade_fault(self, site: str, node: str) -> str | None:
        """ "fail" or "hang" when an upgrade fault strikes this node's upgrade (decided per node, not per call)."""
        for kind in UPGRADE_KINDS:
            for fault in self.active(site, kind):
                if fault.node not in (None, node):
                    continue
                if fault.rate >= 1.0 or (hash((fault.id, node)) % 10_000) / 10_000 < fault.rate:
                    return kind.removeprefix("upgrade_")
        return None


def parse_cli_fault(text: str) -> dict[str, Any]:
    """`kind:rate[:seconds][@site]`, e.g. `api_error:0.05`, `slow:1:0.3`, `offline:1@TX-0412`."""
    site = None
    if "@" in text:
        text, site = text.split("@", 1)
    parts = text.split(":")
    if not parts[0] or len(parts) > 3:
        raise FaultError(f"cannot parse fault {text!r}: expected kind:rate[:seconds][@site]")
    spec: dict[str, Any] = {"kind": parts[0], "site": site}
    try:
        if len(parts) > 1:
            spec["rate"] = float(parts[1])
        if len(parts) > 2:
            spec["seconds"] = float(parts[2])
    except ValueError as exc:
        raise FaultError(f"cannot parse fault {text!r}: {exc}") from exc
    return spec
