"""One virtual location: its object store and API semantics, its controllers, GitOps agent and devices.

Controllers run when something they care about changed, coalesced to one pass per loop iteration, or
when a timer they asked for is due; nothing runs periodically per site (the fleet's tickers poll git
and renew leases for all sites in one place).
"""

import asyncio
import time
from collections import deque
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulator.apiserver import ApiServer
from simulator.bootstrap import system_objects
from simulator.controllers import Controllers
from simulator.devices import Devices
from simulator.fleetgen import SiteSpec
from simulator.gitops import GitOpsAgent
from simulator.resources import BY_KIND
from simulator.store import Store, Stored, now_iso
from simulator.workloads import controller_of

if TYPE_CHECKING:
    from simulator.fleet import Fleet

RECONCILE_ON = frozenset(
    {
        "pods",
        "replicasets",
        "deployments",
        "daemonsets",
        "jobs",
        "nodes",
        "poddisruptionbudgets",
        "statefulsets",
        "secrets",
        "plans",
    }
)
MAX_JOB_LOG = 500
# Fault kinds that break Deployment pods, and what they make the kubelet do (simulator.controllers.kubelet).
WORKLOAD_FAULTS = (
    ("image_pull_failure", "image_pull"),
    ("crashloop_workloads", "crashloop"),
    ("unavailable_workloads", "unavailable"),
)


class Site:
    """A virtual K3s location served under /sites/<code>/."""

    def __init__(self, fleet: "Fleet", spec: SiteSpec, repo: Path):
        self.fleet = fleet
        self.spec = spec
        self.code = spec.code
        self.token = spec.token
        self.repo = repo
        self.store = Store(history=fleet.config.watch_history)
        self.api = ApiServer(self.store, defer=self._defer)
        self.controllers = Controllers(
            self.api,
            pod_start_seconds=fleet.config.pod_start_seconds,
            job_seconds=fleet.config.job_seconds,
            pod_fault=self._pod_fault,
            job_finished=self._job_finished,
            wake_at=self._wake_at,
            upgrade_fault=self._upgrade_fault,
        )
        self.agent = GitOpsAgent(self, repo)
        self.devices = Devices(self)
        self.jobs_log: list[dict[str, Any]] = []
        self.backups: dict[str, dict[str, Any]] = {}
        self.reconciles = 0
        # The last calls to the site's Kubernetes API as they arrive (before any fault delays them), each
        # {"n": sequence number, "method", "path"}: tests wait on them to know a call is in flight.
        self.api_calls: deque[dict[str, Any]] = deque(maxlen=200)
        self._api_calls_seen = 0
        self._pending = False
        self._synchronous = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.store.listeners.append(self._changed)

    def record_api_call(self, method: str, path: str) -> None:
        self._api_calls_seen += 1
        self.api_calls.append({"n": self._api_calls_seen, "method": method, "path": path})

    @property
    def faults(self) -> Any:
        return self.fleet.faults

    def offline(self) -> bool:
        return bool(self.fleet.faults) and self.fleet.faults.offline(self.code)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> "asyncio.Task[None]":
        return self.fleet.spawn(coro)

    # --- start-up -----------------------------------------------------------------------------------

    def bootstrap(self, repo_url: str) -> None:
        """Create the site's initial objects and run the controllers until they settle (pods start at once)."""
        self._synchronous = True
        start_delay = self.controllers.pod_start_seconds
        self.controllers.pod_start_seconds = 0.0
        try:
            for obj in system_objects(repo_url=repo_url, sync_interval=self.fleet.config.sync_interval):
                rt = BY_KIND[(obj["apiVersion"], obj["kind"])]
                self.api.create(rt, obj["metadata"].get("namespace"), obj)
            self.devices.bootstrap(self.spec.nodes)
            for _ in range(20):
                if not self._pending:
                    break
                self._pending = False
                self._reconcile_now()
        finally:
            self.controllers.pod_start_seconds = start_delay
            self._synchronous = False
            self._pending = False
        self.store.forget_history()

    # --- controller scheduling ----------------------------------------------------------------------

    def _changed(self, resource: str, kind: str, stored: Stored) -> None:
        if resource in RECONCILE_ON:
            self.request_reconcile()

    def request_reconcile(self) -> None:
        if self._pending:
            return
        self._pending = True
        if not self._synchronous:
            asyncio.get_running_loop().call_soon(self._run)

    def _run(self) -> None:
        if not self._pending:
            return
        self._pending = False
        self._reconcile_now()

    def _reconcile_now(self) -> None:
        self.reconciles += 1
        self.controllers.reconcile()

    def _wake_at(self, when: float) -> None:
        if self._synchronous:
            return
        loop = asyncio.get_running_loop()
        # Controllers count in time.monotonic(); asyncio's clock is monotonic too, but its origin is its own.
        loop_when = loop.time() + max(0.0, when - time.monotonic()) + 0.01
        if self._timer is not None and self._timer_at is not None and self._timer_at <= loop_when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = loop_when
        self._timer = loop.call_at(loop_when, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        self._timer_at = None
        self.request_reconcile()

    def _defer(self, seconds: float, callback: Any) -> None:
        if self._synchronous:
            callback()
        else:
            asyncio.get_running_loop().call_later(seconds, callback)

    # --- hooks from the controllers -----------------------------------------------------------------

    def _pod_fault(self, pod: dict[str, Any]) -> str | None:
        """The controllers' `pod_fault` hook: what the site's workload faults do to this pod (the first that hits)."""
        if not self.fleet.faults:
            return None
        owner = controller_of(pod)
        if not owner or owner.get("kind") != "ReplicaSet":
            return None
        # The same workload stays broken for the life of the fault: decide per ReplicaSet, not per pass.
        key = f"{pod['metadata']['namespace']}/{owner.get('name')}"
        for kind, effect in WORKLOAD_FAULTS:
            for fault in self.fleet.faults.active(self.code, kind):
                if fault.rate >= 1.0 or (hash((fault.id, key)) % 10_000) / 10_000 < fault.rate:
                    return effect
        return None

    def _upgrade_fault(self, node: str) -> str | None:
        """The controllers' `upgrade_fault` hook: "fail" or "hang" for a node's upgrade Job under a fault."""
        return self.fleet.faults.upgrade_fault(self.code, node) if self.fleet.faults else None

    def k3s_version(self) -> str:
        """The K3s version the site's API reports: its (first) server node's, as the API server is that binary."""
        nodes = self.store.load_all("nodes")
        servers = [n for n in nodes if "node-role.kubernetes.io/control-plane" in (n["metadata"].get("labels") or {})]
        for node in sorted(servers or nodes, key=lambda n: n["metadata"]["name"]):
            version = ((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion")
            if version:
                return str(version)
        return self.fleet.config.k3s_version

    def node_k3s_version(self, hostname: str) -> str:
        """The K3s version a machine runs: its Node's (kept across a restart), else the fleet's starting one."""
        node = self.store.load("nodes", "", hostname) or {}
        return str(
            ((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion") or self.fleet.config.k3s_version
        )

    def _job_finished(self, job: dict[str, Any], pod: dict[str, Any], env: dict[str, str]) -> None:
        containers = (pod.get("spec") or {}).get("containers") or []
        first = containers[0] if containers else {}
        entries = [e for e in first.get("env") or [] if isinstance(e, dict)]
        self.jobs_log.append(
            {
                "name": job["metadata"]["name"],
                "namespace": job["metadata"]["namespace"],
                "node": (pod.get("spec") or {}).get("nodeName"),
                "image": first.get("image"),
                "command": first.get("command"),
                # The spec's literal values; a Secret reference is logged as such, never its value.
                "env": {e.get("name"): e.get("value") for e in entries if "value" in e},
                "env_from": {
                    e.get("name"): "/".join(str(ref.get(k)) for k in ("name", "key"))
                    for e in entries
                    for ref in ((e.get("valueFrom") or {}).get("secretKeyRef") or {},)
                    if ref
                },
                "labels": dict(job["metadata"].get("labels") or {}),
                "finished_at": now_iso(),
            }
        )
        del self.jobs_log[:-MAX_JOB_LOG]
        self.devices.job_finished(job, pod, env)

    def faults_changed(self) -> None:
        self.devices.apply_faults()
        self.request_reconcile()

    # --- backups and summary ------------------------------------------------------------------------

    def record_backup(self, backup: dict[str, Any]) -> None:
        current = self.backups.get(backup["application"])
        if current is None or str(backup["taken_at"]) >= str(current["taken_at"]):
            self.backups[backup["application"]] = backup

    def latest_backups(self) -> list[dict[str, Any]]:
        return [self.backups[app] for app in sorted(self.backups)]

    def summary(self) -> dict[str, Any]:
        nodes = []
        pods = self.store.load_all("pods")
        for node in self.store.load_all("nodes"):
            name = node["metadata"]["name"]
            ready = next(
                (c.get("status") for c in node.get("status", {}).get("conditions", []) if c.get("type") == "Ready"),
                None,
            )
            nodes.append(
                {
                    "name": name,
                    "ready": ready,
                    "unschedulable": bool(node.get("spec", {}).get("unschedulable")),
                    "pods": sum(1 for p in pods if p.get("spec", {}).get("nodeName") == name),
                }
            )
        ks = self.store.load("kustomizations", "flux-system", "site") or {}
        return {
            "code": self.code,
            "name": self.spec.name,
            "region": self.spec.region,
            "timezone": self.spec.timezone,
            "offline": self.offline(),
            "objects": self.store.count(),
            "resource_version": self.store.rv,
            "reconciles": self.reconciles,
            "api_calls": list(self.api_calls),
            "nodes": nodes,
            "devices": [d.summary() for d in self.devices.by_hostname.values()],
            "sync": {**self.agent.summary(), "status": ks.get("status", {})},
            "jobs": len(self.jobs_log),
            "backups": self.latest_backups(),
            "faults": [f.to_json() for f in self.fleet.faults.all() if f.site in (None, self.code)],
        }
