#!/usr/bin/env python3
"""edgefleet first boot: register this machine with the control plane and join the site's K3s cluster.

Runs once from the factory image (a systemd oneshot unit). Standard library only: the image carries
no Python packages. Steps:

1. Identify the machine: serial (DMI), MAC of the primary interface, hardware facts.
2. `POST <url>/api/v1/device/register/` with the site's bootstrap token (from /etc/edgefleet/bootstrap.json
   or flags). Connection errors, timeouts, 409, 429 and 5xx are retried with capped exponential backoff;
   any other refusal (403: token used/expired/revoked or not issued for this serial, machine quarantined;
   400) stops with its message.
3. Write /etc/rancher/k3s/config.yaml (server, token, node-name, node-label) and the node credential
   (0600) that the heartbeat agent sends as `Authorization: Node <token>`.
4. Run the K3s installer that is in the image, air-gapped (INSTALL_K3S_SKIP_DOWNLOAD=true): nothing is
   downloaded. `--dry-run` prints the command instead (registration and files are still real).

A second run after a successful registration skips step 2 (the token is single-use) and only repeats
steps 3-4 from what it stored, unless --force. Exit codes: 0 done, 1 bad set-up, 2 refused by the
control plane, 3 gave up retrying, 4 the installer failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_BOOTSTRAP_FILE = Path("/etc/edgefleet/bootstrap.json")
DEFAULT_K3S_CONFIG_DIR = Path("/etc/rancher/k3s")
DEFAULT_STATE_DIR = Path("/var/lib/edgefleet")
DEFAULT_INSTALLER = Path("/usr/local/bin/k3s-install.sh")
REGISTER_PATH = "/api/v1/device/register/"
RETRYABLE_STATUSES = {408, 409, 425, 429}  # plus every 5xx: the control plane or the site may catch up

EXIT_OK, EXIT_SETUP, EXIT_REFUSED, EXIT_GAVE_UP, EXIT_INSTALLER = 0, 1, 2, 3, 4


class SetupError(Exception):
    """The machine or its configuration is not usable (missing serial, no bootstrap token...)."""


class Refused(Exception):
    """The control plane said no, for a reason retrying will not change."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class GaveUp(Exception):
    """Every attempt failed on a transient error."""


def log(message: str) -> None:
    print(f"edgefleet-firstboot: {message}", file=sys.stderr, flush=True)


# --- identity -------------------------------------------------------------------------------------------


def read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def machine_serial(override: str | None, sys_root: Path) -> str:
    serial = override or read_text(sys_root / "class/dmi/id/product_serial")
    if not serial or serial.lower() in {"to be filled by o.e.m.", "default string", "none", "0"}:
        raise SetupError("no serial number: /sys/class/dmi/id/product_serial is empty; pass --serial")
    return serial


def primary_mac(override: str | None, sys_root: Path, proc_root: Path) -> str:
    """The MAC of the interface holding the default route, else of the first physical interface."""
    if override:
        return override
    net = sys_root / "class/net"
    candidates = []
    default_iface = _default_route_interface(proc_root / "net/route")
    if default_iface:
        candidates.append(net / default_iface)
    # Physical interfaces have a `device` link; bridges, veths and the loopback do not.
    candidates += sorted(p for p in net.glob("*") if (p / "device").exists())
    for iface in candidates:
        mac = read_text(iface / "address")
        if mac and mac != "00:00:00:00:00:00":
            return mac
    raise SetupError(f"no network interface with a MAC under {net}; pass --mac")


def _default_route_interface(route_table: Path) -> str | None:
    for line in (read_text(route_table) or "").splitlines()[1:]:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000":
            return fields[0]
    return None


def hardware_facts(sys_root: Path, proc_root: Path) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "arch": platform.machine(),
    }
    for line in (read_text(proc_root / "meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            facts["memory_mb"] = int(line.split()[1]) // 1024
    for key, name in (("model", "product_name"), ("vendor", "sys_vendor"), ("bios", "bios_version")):
        value = read_text(sys_root / "class/dmi/id" / name)
        if value:
            facts[key] = value
    return facts


# --- talking to the control plane -----------------------------------------------------------------------


def register(url: str, body: dict[str, Any], *, timeout: float, attempts: int, max_backoff: float) -> dict[str, Any]:
    """POST the registration, retrying transient failures; returns the answer or raises Refused/GaveUp."""
    endpoint = url.rstrip("/") + REGISTER_PATH
    if not endpoint.startswith(("http://", "https://")):
        raise SetupError(f"{url!r} is not an http(s) URL")
    data = json.dumps(body).encode()
    delay = 1.0
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(  # noqa: S310  # scheme checked above
            endpoint, data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        retry_after: float | None = None
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310  # scheme checked
                return dict(json.load(response))
        except urllib.error.HTTPError as exc:
            detail = _detail(exc)
            if exc.code < 500 and exc.code not in RETRYABLE_STATUSES:
                raise Refused(exc.code, detail) from exc
            log(f"attempt {attempt}/{attempts}: HTTP {exc.code}: {detail}")
            retry_after = _retry_after(exc)
        except (urllib.error.URLError, TimeoutError, ConnectionError, json.JSONDecodeError) as exc:
            log(f"attempt {attempt}/{attempts}: {getattr(exc, 'reason', exc)}")
        if attempt < attempts:
            # Jitter keeps a site's machines (and a region after an outage) from calling in lock-step.
            pause = retry_after if retry_after is not None else delay * (0.5 + random.random())  # noqa: S311
            time.sleep(min(pause, max_backoff))
            delay = min(delay * 2, max_backoff)
    raise GaveUp(f"no answer from {endpoint} after {attempts} attempts")


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read() or b"{}").get("detail") or exc.reason)
    except (ValueError, AttributeError, OSError):
        return str(exc.reason)


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    try:
        return float(exc.headers.get("Retry-After", ""))
    except ValueError:
        return None


# --- writing the configuration --------------------------------------------------------------------------


def write_private(path: Path, content: str) -> None:
    """Write a secret readable by root only, atomically (a half-written token is worse than none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask may not narrow an existing file
        os.write(fd, content.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def k3s_config(answer: dict[str, Any]) -> str:
    """config.yaml for K3s. JSON strings are valid YAML scalars, so no YAML library is needed."""
    k3s = answer["k3s"]
    lines = [
        "# Written by edgefleet firstboot from the control plane's registration answer.",
        f"server: {json.dumps(k3s['server_url'])}",
        f"token: {json.dumps(k3s['token'])}",
        f"node-name: {json.dumps(k3s.get('node_name') or answer['hostname'])}",
        "node-label:",
        *(f"  - {json.dumps(label)}" for label in k3s.get("node_labels", [])),
    ]
    return "\n".join(lines) + "\n"


def write_state(answer: dict[str, Any], *, config_dir: Path, state_dir: Path) -> None:
    write_private(config_dir / "config.yaml", k3s_config(answer))
    write_private(state_dir / "node-token", answer["node_token"] + "\n")
    public = {key: answer.get(key) for key in ("node_id", "hostname", "role", "site")}
    write_private(state_dir / "registration.json", json.dumps(public, indent=2) + "\n")


def installer_command(answer: dict[str, Any], installer: Path) -> tuple[list[str], dict[str, str]]:
    """The air-gapped K3s install: the binary and script come with the image."""
    role = "server" if answer.get("role") == "server" else "agent"
    env = {
        "INSTALL_K3S_SKIP_DOWNLOAD": "true",
        "K3S_URL": answer["k3s"]["server_url"],
        "K3S_TOKEN": answer["k3s"]["token"],
    }
    return [str(installer), role], env


def run_installer(argv: list[str], env: dict[str, str], *, dry_run: bool) -> int:
    if dry_run:
        shown = " ".join(f"{k}={'<redacted>' if k == 'K3S_TOKEN' else shlex.quote(v)}" for k, v in env.items())
        print(f"would run: {shown} {shlex.join(argv)}", flush=True)
        return 0
    log(f"running {shlex.join(argv)}")
    return subprocess.call(argv, env={**os.environ, **env})  # noqa: S603  # our own installer, fixed argv


# --- command line ---------------------------------------------------------------------------------------


def load_bootstrap(path: Path, url: str | None, token: str | None) -> tuple[str, str]:
    settings: dict[str, Any] = {}
    if path.is_file():
        try:
            settings = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SetupError(f"cannot read {path}: {exc}") from exc
    url = url or settings.get("control_plane_url") or settings.get("url")
    token = token or settings.get("bootstrap_token") or settings.get("token")
    if not url or not token:
        raise SetupError(f"no control-plane URL or bootstrap token: put them in {path} or pass --url and --token")
    return str(url), str(token)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Register this machine with edgefleet and join its K3s cluster.")
    parser.add_argument("--bootstrap-file", type=Path, default=DEFAULT_BOOTSTRAP_FILE)
    parser.add_argument("--url", help="control-plane URL (overrides control_plane_url in the bootstrap file)")
    parser.add_argument("--token", help="bootstrap token (overrides bootstrap_token in the bootstrap file)")
    parser.add_argument("--serial", help="override the DMI serial")
    parser.add_argument("--mac", help="override the primary interface's MAC")
    parser.add_argument("--config-dir", type=Path, default=DEFAULT_K3S_CONFIG_DIR, help="where config.yaml goes")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="node token and registration")
    parser.add_argument("--installer", type=Path, default=DEFAULT_INSTALLER)
    parser.add_argument("--sys-root", type=Path, default=Path("/sys"), help=argparse.SUPPRESS)
    parser.add_argument("--proc-root", type=Path, default=Path("/proc"), help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds per request")
    parser.add_argument("--attempts", type=int, default=100, help="tries before giving up")
    parser.add_argument("--max-backoff", type=float, default=300.0, help="longest pause between tries")
    parser.add_argument("--force", action="store_true", help="register again even if this machine already did")
    parser.add_argument("--dry-run", action="store_true", help="print the installer command instead of running it")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stored = args.state_dir / "registration.json"
    try:
        if stored.is_file() and (args.config_dir / "config.yaml").is_file() and not args.force:
            log(f"already registered ({stored}); re-running the installer only")
            answer = _reload(args.config_dir, args.state_dir)
        else:
            url, token = load_bootstrap(args.bootstrap_file, args.url, args.token)
            body = {
                "serial": machine_serial(args.serial, args.sys_root),
                "mac": primary_mac(args.mac, args.sys_root, args.proc_root),
                "bootstrap_token": token,
                "facts": hardware_facts(args.sys_root, args.proc_root),
            }
            log(f"registering serial {body['serial']} (MAC {body['mac']}) with {url}")
            answer = register(url, body, timeout=args.timeout, attempts=args.attempts, max_backoff=args.max_backoff)
            write_state(answer, config_dir=args.config_dir, state_dir=args.state_dir)
            log(f"registered as node {answer['node_id']} ({answer['hostname']}) at site {answer['site']}")
    except SetupError as exc:
        log(str(exc))
        return EXIT_SETUP
    except Refused as exc:
        log(f"registration refused: {exc.detail}")
        return EXIT_REFUSED
    except GaveUp as exc:
        log(str(exc))
        return EXIT_GAVE_UP
    argv_, env = installer_command(answer, args.installer)
    code = run_installer(argv_, env, dry_run=args.dry_run)
    if code:
        log(f"the K3s installer exited with {code}")
        return EXIT_INSTALLER
    return EXIT_OK


def _reload(config_dir: Path, state_dir: Path) -> dict[str, Any]:
    """Rebuild the registration answer from what the first run stored (config.yaml is ours, line per key)."""
    answer = json.loads((state_dir / "registration.json").read_text())
    k3s: dict[str, Any] = {}
    for line in (config_dir / "config.yaml").read_text().splitlines():
        key, _, value = line.partition(": ")
        if key in ("server", "token"):
            k3s["server_url" if key == "server" else "token"] = json.loads(value)
    answer["k3s"] = k3s
    return dict(answer)


if __name__ == "__main__":
    sys.exit(main())
