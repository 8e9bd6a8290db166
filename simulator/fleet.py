"""The fleet: all sites of one simulator process, its state directory, shared tickers and settings.

State directory layout: `fleet.json` (what the control plane imports), `kubeconfigs/<code>.yaml`,
`admin-token` (for the control API), `repos/<code>.git` (each site's bare repository, kept across
restarts), and `simulator.json` (the address it listens on, written once it does).
"""

import asyncio
import base64
import json
import logging
import os
import secrets
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from simulator.faults import FaultError, Faults
from simulator.fleetgen import K3S_VERSION, SiteSpec, reconcile
from simulator.githost.host import FAULT_KINDS as GIT_HOST_FAULT_KINDS
from simulator.githost.host import TARGET as GIT_HOST_TARGET
from simulator.githost.host import GitHost
from simulator.gitrepo import init_bare
from simulator.site import Site
from simulator.tls import ensure_certificates

log = logging.getLogger(__name__)

FLEET_KEY: web.AppKey["Fleet"] = web.AppKey("fleet")


@dataclass
class Config:
    """Everything the command line sets; the timings are short enough for tests and demos by default."""

    sites: int
    state_dir: Path
    seed: int = 0
    host: str = "127.0.0.1"
    port: int = 8700
    control_plane: str | None = None
    sync_interval: float = 5.0
    lease_seconds: float = 10.0
    heartbeat_seconds: float = 5.0
    pod_start_seconds: float = 0.5
    job_seconds: float = 1.0
    node_gone_seconds: float = 1.0
    reboot_seconds: float = 3.0
    retry_seconds: float = 3.0
    refused_retry_seconds: float = 30.0
    http_timeout: float = 10.0
    watch_history: int = 40
    bookmark_seconds: float = 5.0
    faults: list[dict[str, Any]] = field(default_factory=list)
    tls: bool = True
    git_group: str = "fleet"
    k3s_version: str = K3S_VERSION  # what every machine runs at start (a Plan upgrades it)


class Fleet:
    """The sites and what they share: faults, the HTTP client devices use, the git and lease tickers."""

    def __init__(self, config: Config):
        self.config = config
        self.state_dir = config.state_dir
        self.control_plane = config.control_plane.rstrip("/") if config.control_plane else None
        self.faults = Faults(seed=config.seed)
        self.sites: dict[str, Site] = {}
        self.admin_token = ""
        self.base_url = ""
        self.ca_path: Path | None = None
        self.cert_path: Path | None = None
        self.key_path: Path | None = None
        self.started_at = time.time()
        self.startup_seconds = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None
        # The sites group's projects are the sites' own repositories (repos/<code>.git).
        self.githost = GitHost(self.state_dir / "githost", self.state_dir / "repos", config.git_group, self.faults)

    # --- set-up -------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create or reuse the state directory and build every site (before the server listens)."""
        started = time.monotonic()
        (self.state_dir / "repos").mkdir(parents=True, exist_ok=True)
        (self.state_dir / "kubeconfigs").mkdir(parents=True, exist_ok=True)
        self.admin_token = self._admin_token()
        self.githost.prepare()
        if self.config.tls:
            self.ca_path, self.cert_path, self.key_path = ensure_certificates(self.state_dir / "tls", self.config.host)
        previous: list[SiteSpec] = []
        fleet_file = self.state_dir / "fleet.json"
        if fleet_file.exists():
            try:
                previous = [SiteSpec.from_json(s) for s in json.loads(fleet_file.read_text())["sites"]]
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable %s: %s", fleet_file, exc)
        for spec in reconcile(previous, self.config.sites, self.config.seed):
            repo = self.state_dir / "repos" / f"{spec.code}.git"
            init_bare(repo)
            site = Site(self, spec, repo)
            site.bootstrap(self.repo_url(spec.code))
            self.sites[spec.code] = site
        for fault in self.config.faults:
            self.add_fault(fault)
        self.startup_seconds = time.monotonic() - started

    def _admin_token(self) -> str:
        path = self.state_dir / "admin-token"
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        token = secrets.token_urlsafe(32)
        path.write_text(token + "\n")
        path.chmod(0o600)
        return token

    def repo_url(self, code: str) -> str:
        return (self.state_dir / "repos" / f"{code}.git").resolve().as_uri()

    def api_url(self, code: str) -> str:
        return f"{self.base_url}/sites/{code}"

    def write_state(self, host: str, port: int) -> None:
        """Write fleet.json, the kubeconfigs and simulator.json once the listening port is known."""
        scheme = "https" if self.ca_path else "http"
        self.base_url = f"{scheme}://{host}:{port}"
        self.githost.set_base_url(self.base_url)
        ca_data = base64.b64encode(self.ca_path.read_bytes()).decode() if self.ca_path else None
        sites = []
        for code, site in self.sites.items():
            entry = site.spec.to_json(api_url=self.api_url(code), repo_url=self.repo_url(code))
            if ca_data:
                entry["certificate_authority_data"] = ca_data
            sites.append(entry)
        _write_if_changed(self.state_dir / "fleet.json", json.dumps({"sites": sites}, indent=1) + "\n")
        for code, site in self.sites.items():
            _write_if_changed(self.state_dir / "kubeconfigs" / f"{code}.yaml", self.kubeconfig(site))
        info = {
            "pid": os.getpid(),
            "host": host,
            "port": port,
            "base_url": self.base_url,
            "ca_cert": str(self.ca_path) if self.ca_path else None,
            "sites": len(self.sites),
            "startup_seconds": round(self.startup_seconds, 3),
            "git_host": self.githost.info(),
        }
        _write_if_changed(self.state_dir / "simulator.json", json.dumps(info, indent=1) + "\n")

    def kubeconfig(self, site: Site) -> str:
        code = site.code
        cluster: dict[str, Any] = {"server": self.api_url(code)}
        if self.ca_path:
            cluster["certificate-authority-data"] = base64.b64encode(self.ca_path.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": code, "cluster": cluster}],
            "users": [{"name": f"{code}-admin", "user": {"token": site.token}}],
            "contexts": [{"name": code, "context": {"cluster": code, "user": f"{code}-admin", "namespace": "default"}}],
            "current-context": code,
            "preferences": {},
        }
        return yaml.safe_dump(config, sort_keys=False)

    # --- running ------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.spawn(self._ticker(self.config.sync_interval, lambda site: site.agent.poll()))
        self.spawn(self._ticker(self.config.lease_seconds, lambda site: site.devices.renew_leases()))
        self.spawn(self._expire_faults())
        for site in self.sites.values():
            site.agent.poll()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> "asyncio.Task[None]":
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def http(self) -> aiohttp.ClientSession:
        """The session devices call the control plane with; every call has a total timeout."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.http_timeout))
        return self._http

    async def _ticker(self, interval: float, action: Any) -> None:
        """Call `action(site)` for every site once per `interval`, spread evenly over the interval."""
        # Small steps keep each burst short (a few hundred sites at 3000 would hold the loop for
        # milliseconds and show in API tail latency); waking 20 times a second costs nothing.
        step = min(0.05, interval)
        slots = max(1, round(interval / step))
        tick = 0
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            sites = list(self.sites.values())
            for index in range(tick % slots, len(sites), slots):
                try:
                    action(sites[index])
                except Exception:
                    log.exception("ticker action failed for %s", sites[index].code)
            tick += 1
            next_at += step
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def _expire_faults(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            gone = self.faults.expire()
            if gone:
                self._faults_changed(gone)

    # --- faults and devices (used by the control API) -----------------------------------------------

    def known_nodes(self) -> dict[str, str]:
        return {host: code for code, site in self.sites.items() for host in site.devices.by_hostname}

    def add_fault(self, spec: dict[str, Any]) -> Any:
        if spec.get("site") == GIT_HOST_TARGET and spec.get("kind") not in GIT_HOST_FAULT_KINDS:
            kinds = ", ".join(GIT_HOST_FAULT_KINDS)
            raise FaultError(f"the git host takes the fault kinds {kinds}, not {spec.get('kind')!r}")
        fault = self.faults.add(
            kind=spec.get("kind"),
            site=spec.get("site"),
            rate=spec.get("rate", 1.0),
            node=spec.get("node"),
            seconds=spec.get("seconds"),
            known_sites={*self.sites, GIT_HOST_TARGET},
            known_nodes=self.known_nodes(),
        )
        self._faults_changed([fault])
        return fault

    def remove_faults(self, fault_id: str | None = None) -> list[Any]:
        if fault_id is None:
            gone = self.faults.clear()
        else:
            removed = self.faults.remove(fault_id)
            gone = [removed] if removed else []
        self._faults_changed(gone)
        return gone

    def _faults_changed(self, faults: list[Any]) -> None:
        if not faults:
            return
        codes = {f.site for f in faults}
        targets = self.sites.values() if None in codes else [self.sites[c] for c in codes if c in self.sites]
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # start-up faults: nothing is running yet
        for site in targets:
            site.faults_changed()
            if any(f.kind == "offline" for f in faults) and site.offline():
                for watcher in list(site.store.watchers):
                    watcher.queue.put_nowait(None)


def _write_if_changed(path: Path, text: str) -> None:
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
