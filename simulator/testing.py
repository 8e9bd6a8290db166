"""Run the simulator from tests: `running_simulator(...)` starts `python -m simulator` as a subprocess
on a free port and yields a `Simulator` handle; leaving the block stops it (SIGTERM, then kill).

    from simulator.testing import running_simulator

    with running_simulator(sites=3, state_dir=tmp_path / "sim", control_plane="http://127.0.0.1:8000") as sim:
        code = sim.codes[0]
        api = sim.api_client(code)                  # kubernetes.client.ApiClient for that site
        sim.kubeconfig_path(code)                   # for kubectl --kubeconfig
        fault_id = sim.add_fault("api_error", site=code, rate=0.5)
        sim.unbox(code, serial="G6TEST000001", mac="94:c6:91:00:00:01", bootstrap_token="...")
        sim.jobs(code)                              # the Jobs that ran at the site (name, node, image, env)
        sim.clear_faults()
        sim.gitlab_url, sim.gitlab_token, sim.git_group  # the git host (GitLab API v4 + git smart HTTP)
        sim.git_url(code)                           # https clone URL of the site's project
        sim.gitlab()                                # gitlab.Gitlab for it (python-gitlab), trusting the CA
        sim.create_git_token(scopes=["read_api"])   # another access token (role, project, expiry, revoked)

Only the standard library is needed here, except `api_client()` which imports `kubernetes` and `gitlab()`
which imports python-gitlab.
"""

import contextlib
import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.harness import WaitTimeout, log_tail, start_process, stop_process, wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent


class SimulatorError(RuntimeError):
    """The simulator did not start, or a control API call failed (`status` holds the HTTP status)."""

    def __init__(self, message: str, status: int | None = None, body: Any = None):
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass
class Simulator:
    """A running simulator: addresses, credentials, the parsed fleet.json and control API helpers."""

    base_url: str
    admin_token: str
    state_dir: Path
    fleet: dict[str, Any]
    process: subprocess.Popen[bytes]
    ca_cert: Path | None = None
    timeout: float = 10.0
    git_host: dict[str, Any] | None = None

    # --- the fleet ----------------------------------------------------------------------------------

    @property
    def codes(self) -> list[str]:
        return [s["code"] for s in self.fleet["sites"]]

    def site(self, code: str) -> dict[str, Any]:
        """The site's fleet.json entry (code, name, api_url, token, repo_url, nodes, ...)."""
        for entry in self.fleet["sites"]:
            if entry["code"] == code:
                return dict(entry)
        raise KeyError(code)

    def kubeconfig_path(self, code: str) -> Path:
        return self.state_dir / "kubeconfigs" / f"{code}.yaml"

    def repo_path(self, code: str) -> Path:
        return self.state_dir / "repos" / f"{code}.git"

    def api_client(self, code: str) -> Any:
        """A `kubernetes.client.ApiClient` for the site, built from its kubeconfig."""
        from kubernetes import config  # imported here so that the rest of this module needs no dependency

        return config.new_client_from_config(config_file=str(self.kubeconfig_path(code)))

    # --- the git host -------------------------------------------------------------------------------

    @property
    def gitlab_url(self) -> str:
        """The git host's base URL (`https://127.0.0.1:PORT/gitlab`): python-gitlab's `url`, FLEET_GITLAB_URL."""
        return str((self.git_host or {})["url"])

    @property
    def gitlab_token(self) -> str:
        """The control plane's access token (an administrator's, scope `api`): FLEET_GITLAB_TOKEN."""
        return Path((self.git_host or {})["token_file"]).read_text().strip()

    @property
    def git_group(self) -> str:
        """The group whose projects are the sites' repositories: FLEET_GITLAB_GROUP."""
        return str((self.git_host or {})["group"])

    def git_url(self, code: str) -> str:
        """The https clone URL of a site's project (it exists once created through the API)."""
        return f"{self.gitlab_url}/{self.git_group}/{code}.git"

    def gitlab(self, token: str | None = None, **kwargs: Any) -> Any:
        """A `gitlab.Gitlab` client for the git host, verifying its certificate against the simulator's CA."""
        import gitlab  # imported here so that the rest of this module needs no dependency

        return gitlab.Gitlab(
            self.gitlab_url,
            private_token=token if token is not None else self.gitlab_token,
            ssl_verify=str(self.ca_cert) if self.ca_cert else True,
            timeout=self.timeout,
            **kwargs,
        )

    def create_git_token(
        self,
        *,
        name: str = "test-token",
        scopes: Sequence[str] = ("api",),
        access_level: int = 50,
        project: str | int | None = None,
        expires_at: str | None = None,
        revoked: bool = False,
    ) -> dict[str, Any]:
        """A new access token on the git host: a user's with `access_level` on the group, or a project
        access token for `project` (id or path). The answer has its `token` and `id`."""
        body: dict[str, Any] = {"name": name, "scopes": list(scopes), "access_level": access_level, "revoked": revoked}
        if project is not None:
            body["project"] = project
        if expires_at is not None:
            body["expires_at"] = expires_at
        return dict(self._call("POST", "/_sim/githost/tokens", body, expect=201))

    def revoke_git_token(self, token_id: int) -> None:
        self._call("DELETE", f"/_sim/githost/tokens/{token_id}")

    def git_host_summary(self) -> dict[str, Any]:
        """Projects (with the repository each lives in), tokens (no values) and request counts."""
        return dict(self._call("GET", "/_sim/githost"))

    # --- the control API ----------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> tuple[int, Any]:
        """Call the control API (paths start with /_sim/); returns (status, parsed JSON body)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)  # noqa: S310
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if auth:
            request.add_header("Authorization", f"Bearer {self.admin_token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._ssl()) as response:  # noqa: S310
                return response.status, _parse(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _parse(exc.read())

    def _call(self, method: str, path: str, body: Any = None, *, expect: int = 200) -> Any:
        status, data = self.request(method, path, body)
        if status != expect:
            raise SimulatorError(f"{method} {path} answered {status}: {data}", status=status, body=data)
        return data

    def _ssl(self) -> ssl.SSLContext | None:
        if self.ca_cert is None:
            return None
        return ssl.create_default_context(cafile=str(self.ca_cert))

    def add_fault(
        self,
        kind: str,
        *,
        site: str | None = None,
        rate: float = 1.0,
        node: str | None = None,
        seconds: float | None = None,
    ) -> str:
        """Inject a fault (see simulator.faults for the kinds); returns its id."""
        body = {"kind": kind, "site": site, "rate": rate, "node": node, "seconds": seconds}
        return str(
            self._call(
                "POST", "/_sim/faults", {k: v for k, v in body.items() if v is not None or k == "site"}, expect=201
            )["id"]
        )

    def faults(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/_sim/faults")["faults"])

    def remove_fault(self, fault_id: str) -> None:
        self._call("DELETE", f"/_sim/faults/{fault_id}")

    def clear_faults(self) -> None:
        self._call("DELETE", "/_sim/faults")

    def unbox(
        self,
        site: str,
        *,
        serial: str,
        mac: str,
        role: str = "agent",
        bootstrap_token: str | None = None,
        hostname: str | None = None,
    ) -> dict[str, Any]:
        """Plug a new machine in at `site`: it registers with the control plane, joins and heartbeats."""
        body = {"site": site, "serial": serial, "mac": mac, "role": role, "bootstrap_token": bootstrap_token}
        if hostname:
            body["hostname"] = hostname
        return dict(self._call("POST", "/_sim/devices", body, expect=201))

    def record_backup(self, site: str, **backup: Any) -> dict[str, Any]:
        """Record a backup (application, namespace, location, size, restore_image[, taken_at]) that the
        site's devices then report in their heartbeats."""
        return dict(self._call("POST", "/_sim/backups", {"site": site, **backup}, expect=201))

    def jobs(self, code: str) -> list[dict[str, Any]]:
        """The Jobs that ran to completion at the site: name, namespace, node, image, env, labels."""
        return list(self._call("GET", f"/_sim/sites/{code}/jobs")["jobs"])

    def summary(self, code: str) -> dict[str, Any]:
        """Nodes, devices (registration, heartbeats, wipes), sync state, faults and the last API calls of
        one site."""
        return dict(self._call("GET", f"/_sim/sites/{code}"))

    def api_calls(self, code: str, *, after: int = 0) -> list[dict[str, Any]]:
        """The site's last Kubernetes API calls numbered above `after`, as they arrived (before a fault
        delays them): `{"n", "method", "path"}`, e.g. to know that a call is in flight."""
        return [call for call in self.summary(code)["api_calls"] if call["n"] > after]

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait, then kill; returns the exit code."""
        return stop_process(self.process, timeout=timeout)


def _parse(data: bytes) -> Any:
    try:
        return json.loads(data) if data else None
    except ValueError:
        return data.decode(errors="replace")


@contextlib.contextmanager
def running_simulator(
    *,
    sites: int = 3,
    state_dir: Path,
    control_plane: str | None = None,
    seed: int = 0,
    sync_interval: float = 1.0,
    extra_args: Sequence[str] = (),
    startup_timeout: float = 60.0,
    python: str = sys.executable,
) -> Iterator[Simulator]:
    """Start a simulator subprocess on a free port and stop it when the block ends.

    `extra_args` passes further command-line options (e.g. `["--job-seconds", "0.2"]`). The output goes
    to `state_dir/simulator.log`. Raises SimulatorError if it does not answer within `startup_timeout`.
    """
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    info_path = state_dir / "simulator.json"
    info_path.unlink(missing_ok=True)
    args = [
        python,
        "-m",
        "simulator",
        "--sites",
        str(sites),
        "--port",
        "0",
        "--state-dir",
        str(state_dir),
        "--seed",
        str(seed),
        "--sync-interval",
        str(sync_interval),
    ]
    if control_plane:
        args += ["--control-plane", control_plane]
    args += list(extra_args)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    process = start_process(args, log=state_dir / "simulator.log", cwd=REPO_ROOT, env=env)
    sim: Simulator | None = None
    try:
        sim = _wait_started(process, state_dir, startup_timeout)
        yield sim
    finally:
        if sim is not None:
            sim.stop()
        else:
            stop_process(process, kill=True)


def _wait_started(process: subprocess.Popen[bytes], state_dir: Path, timeout: float) -> Simulator:
    info_path = state_dir / "simulator.json"

    def answering() -> Simulator | None:
        if process.poll() is not None:
            tail = log_tail(state_dir / "simulator.log", 2000)
            raise SimulatorError(f"the simulator exited with {process.returncode}:\n{tail}")
        try:
            info = json.loads(info_path.read_text())
        except (OSError, ValueError):
            return None
        if info.get("pid") != process.pid:
            return None
        ca = Path(info["ca_cert"]) if info.get("ca_cert") else None
        sim = Simulator(
            base_url=info["base_url"],
            admin_token=(state_dir / "admin-token").read_text().strip(),
            state_dir=state_dir,
            fleet=json.loads((state_dir / "fleet.json").read_text()),
            process=process,
            ca_cert=ca,
            git_host=info.get("git_host"),
        )
        try:
            status, _ = sim.request("GET", "/_sim/healthz", auth=False)
        except OSError:
            return None
        return sim if status == 200 else None

    try:
        return wait_until(answering, timeout, "the simulator answering", interval=0.05)
    except WaitTimeout:
        stop_process(process, kill=True)
        raise SimulatorError(
            f"the simulator did not answer within {timeout:.0f}s (see {state_dir / 'simulator.log'})"
        ) from None
