"""Fixtures for the simulator tests: one simulator subprocess for the session (small fleet, short
intervals), a fake control plane that records what devices send, and kubectl/wait helpers.

These tests need no database: nothing here touches Django. Each test module works on its own site
(`site_code` picks one by module) so that tests do not see each other's objects.
"""

import http.client
import json
import os
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from simulator.testing import Simulator, running_simulator
from tests.support.http import JsonHandler

KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")
SITES = 8
FAST = [
    "--heartbeat-interval",
    "0.3",
    "--lease-interval",
    "1",
    "--pod-start-seconds",
    "0.2",
    "--job-seconds",
    "0.3",
    "--reboot-seconds",
    "0.5",
    "--node-gone-seconds",
    "0.3",
    "--retry-seconds",
    "0.3",
    "--refused-retry-seconds",
    "0.5",
    "--bookmark-seconds",
    "0.5",
]
# Module name -> the site index it works on, so tests in different modules never share a site.
SITE_OF_MODULE = {
    "test_client": 0,
    "test_client_workloads": 0,
    "test_kubectl": 1,
    "test_gitops": 2,
    "test_devices": 3,
    "test_faults": 4,
    "test_errors": 5,
    "test_watch": 6,
}
SPARE_SITE = 7  # for a test that needs a site no other module touches


@dataclass
class FakeControlPlane:
    """A test double for edgefleet's device API: records requests and answers per the device contract."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    refuse_serials: set[str] = field(default_factory=set)
    revoked_tokens: set[str] = field(default_factory=set)
    issued: dict[str, str] = field(default_factory=dict)  # serial -> the last node token handed out
    names: dict[str, str] = field(default_factory=dict)  # serial -> the node name to hand out
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, path: str, **match: Any) -> list[dict[str, Any]]:
        with self.lock:
            found = [r for r in self.requests if r["path"] == path]
        return [r for r in found if all(r["body"].get(k) == v for k, v in match.items())]

    def heartbeats(self, token: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"].endswith("/heartbeat/") and r["auth"] == f"Node {token}"]


def _handler(cp: FakeControlPlane) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            auth = self.headers.get("Authorization", "")
            with cp.lock:
                cp.requests.append({"path": self.path, "body": body, "auth": auth, "at": time.monotonic()})
                count = sum(1 for r in cp.requests if r["path"] == self.path)
            if self.path == "/api/v1/device/register/":
                if body.get("serial") in cp.refuse_serials:
                    return self._answer(403, {"detail": "quarantined: unknown serial"})
                token = f"node-{body.get('serial')}-{count}"
                with cp.lock:
                    cp.issued[str(body.get("serial"))] = token
                answer: dict[str, Any] = {
                    "node_id": count,
                    "node_token": token,
                    "k3s": {"server_url": "https://k3s.invalid:6443", "token": "join-me"},
                }
                name = cp.names.get(str(body.get("serial")))
                if name:
                    answer["hostname"] = name
                    answer["k3s"].update(node_name=name, node_labels=[f"edgefleet.io/node-id={count}"])
                return self._answer(200, answer)
            if self.path == "/api/v1/device/heartbeat/":
                if auth.removeprefix("Node ") in cp.revoked_tokens:
                    return self._answer(401, {"detail": "credential revoked"})
                return self._answer(200, {"ok": True})
            return self._answer(404, {"detail": "not found"})

    return Handler


@pytest.fixture(scope="session")
def control_plane() -> Iterator[FakeControlPlane]:
    cp = FakeControlPlane()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(cp))
    cp.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield cp
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory, control_plane: FakeControlPlane) -> Iterator[Simulator]:
    state_dir = tmp_path_factory.mktemp("sim")
    with running_simulator(
        sites=SITES, state_dir=state_dir, control_plane=control_plane.url, seed=7, sync_interval=0.3, extra_args=FAST
    ) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _no_leftover_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").clear_faults()


@pytest.fixture
def site_code(sim: Simulator, request: pytest.FixtureRequest) -> str:
    module = request.module.__name__.rsplit(".", 1)[-1]
    return sim.codes[SITE_OF_MODULE[module]]


@pytest.fixture
def api(sim: Simulator, site_code: str) -> Iterator[Any]:
    client = sim.api_client(site_code)
    yield client
    client.close()


@pytest.fixture
def namespace(api: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of the test's own at its module's site, deleted afterwards."""
    name = request.node.name.replace("_", "-")[:40].strip("-").lower()
    core = k8s_client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    try:
        core.delete_namespace(name)
    except ApiException:
        pass


Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def kubectl_command(sim: Simulator, site_code: str, cache_dir: Path, *args: str) -> list[str]:
    """kubectl's command line against a site, with its kubeconfig from DIR/kubeconfigs/."""
    return [KUBECTL, "--kubeconfig", str(sim.kubeconfig_path(site_code)), "--cache-dir", str(cache_dir), *args]


@pytest.fixture
def kubectl(sim: Simulator, site_code: str, tmp_path: Path) -> Kubectl:
    """Run kubectl against the module's site with its kubeconfig from DIR/kubeconfigs/."""

    def run(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = kubectl_command(sim, site_code, tmp_path / "kube-cache", *args)
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr}{done.stdout}")
        return done

    return run


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: Any


Raw = Callable[..., RawResponse]


@pytest.fixture
def raw(sim: Simulator, site_code: str) -> Raw:
    """Send a hand-made request to the module's site API (bad bodies, odd content types, other tokens)."""

    def send(
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        content_type: str | None = "application/json",
        token: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10,
    ) -> RawResponse:
        base = urllib.parse.urlsplit(sim.site(site_code)["api_url"])
        context = ssl.create_default_context(cafile=str(sim.ca_cert)) if sim.ca_cert else None
        conn = http.client.HTTPSConnection(base.hostname, base.port, timeout=timeout, context=context)
        all_headers = {"Authorization": f"Bearer {sim.site(site_code)['token'] if token is None else token}"}
        if content_type:
            all_headers["Content-Type"] = content_type
        all_headers.update(headers or {})
        try:
            conn.request(method, base.path + path, body=body, headers=all_headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        try:
            parsed: Any = json.loads(data) if data else None
        except ValueError:
            parsed = data.decode(errors="replace")
        return RawResponse(response.status, dict(response.getheaders()), parsed)

    return send
