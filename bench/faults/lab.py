"""The processes of one fault experiment: a simulated fleet, a PostgreSQL database of its own, a private
redis-server that can be SIGKILLed and restarted empty on the same port, worker "hosts" (each with its own
FLEET_DATA_DIR, so its own clone cache and file locks) and beat, every long-running process under
`fleet.supervise` as the Procfile runs them.

The control plane's settings are in the environment before `django.setup()` (so this module is imported
by `python -m bench.faults`, a process of its own); the experiment itself (importing the fleet, starting a
rollout, reading its state) runs in this process against the same database.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.measure import descendants
from simulator import harness

ROOT = Path(__file__).resolve().parent.parent.parent


# Something the experiment waited for did not happen in time (the verdict says what).
Timeout = harness.WaitTimeout


def wait_until(check: Callable[[], bool], seconds: float, what: str, every: float = 0.25) -> float:
    """simulator.harness.wait_until, returning the seconds it took (the verdicts report them)."""
    started = time.monotonic()
    harness.wait_until(check, seconds, what, interval=every)
    return time.monotonic() - started


def nice(niceness: int) -> list[str]:
    return ["nice", "-n", str(niceness)] if niceness else []


class Redis(harness.RedisServer):
    """A private redis-server without persistence: SIGKILLed, it comes back empty (on the same port)."""

    def __init__(self, directory: Path, niceness: int) -> None:
        super().__init__(directory, prefix=nice(niceness))


def supervised(name: str, command: list[str]) -> list[str]:
    """`command` under fleet.supervise, as the Procfile runs it (any exit is a restart)."""
    return [sys.executable, "-m", "fleet.supervise", "--name", name, "--", *command]


@dataclass
class Host:
    """A worker "host": its own FLEET_DATA_DIR (clone cache, locks) and worker processes, sharing only
    PostgreSQL and Redis with the other hosts."""

    name: str
    data_dir: Path
    env: dict[str, str]
    concurrency: int
    niceness: int
    workers: int = 1
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.data_dir / "worker.log"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for number in range(self.workers):
            command = [*nice(self.niceness), sys.executable, "-m", "celery", "-A", "fleet", "worker",
                       "-Q", "control,io", "-P", "prefork", "-c", str(self.concurrency), "-l", "INFO",
                       "-n", f"{self.name}-{number}@%h"]  # fmt: skip
            self.procs.append(
                subprocess.Popen(
                    supervised(f"worker-{self.name}-{number}", command),
                    cwd=ROOT,
                    env=self.env,
                    stdout=self.log_path.open("ab"),
                    stderr=subprocess.STDOUT,
                )
            )

    def ready(self) -> bool:
        return self.log_path.exists() and self.log_path.read_bytes().count(b" ready.") >= len(self.procs)

    def worker_processes(self) -> list[tuple[int, str]]:
        """(pid, "main" | "child") of the Celery processes below the supervisors (not git, not renderers)."""
        found = []
        for supervisor in self.procs:
            tree = descendants(supervisor.pid)
            pids = {pid for pid, _, _ in tree}
            for pid, _comm, _ in tree:
                if pid == supervisor.pid:
                    continue
                cmdline = _cmdline(pid)
                if "celery" not in cmdline or "worker" not in cmdline:
                    continue
                parent = _ppid(pid)
                found.append((pid, "main" if parent == supervisor.pid or parent not in pids else "child"))
        return found

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def recreate_database(url: str) -> None:
    """Drop and create the experiment's database (from a migrated template when there is one: `migrate`
    then only applies what is new)."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    template = f"{name}_template"
    admin = parts._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        has_template = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [template]).fetchone()
        if has_template:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            conn.execute(f'CREATE DATABASE "{name}"')


def save_template(url: str) -> None:
    """Keep the migrated, empty database as the template of the next run's."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [f"{name}_template"]).fetchone():
            return
        conn.execute(f'CREATE DATABASE "{name}_template" TEMPLATE "{name}"')


@dataclass
class Lab:
    """Everything one experiment runs; `start()` brings it up, `close()` takes it down."""

    sites: int
    database_url: str
    tmp: Path
    hosts: int = 1
    concurrency: int = 2
    sync_interval: float = 0.5
    niceness: int = 10
    simulator_args: tuple[str, ...] = ()
    git_transport: str = "file"
    settings: dict[str, str] = field(default_factory=dict)
    host_settings: dict[str, dict[str, str]] = field(default_factory=dict)
    small_disk: dict[str, str] = field(default_factory=dict)  # host name -> tmpfs size for its clone cache
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    worker_hosts: list[Host] = field(default_factory=list)
    beat: subprocess.Popen[bytes] | None = None
    sim: Any = None
    redis: Redis | None = None

    def start(self) -> None:
        sys.path.insert(0, str(ROOT))
        from simulator.testing import running_simulator

        self.sim = self.stack.enter_context(
            running_simulator(
                sites=self.sites,
                state_dir=self.tmp / "sim",
                sync_interval=self.sync_interval,
                extra_args=self.simulator_args,
                startup_timeout=600,
            )
        )
        if self.git_transport == "https":
            os.environ.update(
                {
                    "FLEET_GIT_HOST": "gitlab",
                    "FLEET_GITLAB_URL": self.sim.gitlab_url,
                    "FLEET_GITLAB_TOKEN": self.sim.gitlab_token,
                    "FLEET_GITLAB_GROUP": self.sim.git_group,
                    "FLEET_GIT_CA_FILE": str(self.sim.ca_cert),
                    "FLEET_GIT_HOSTS": urlsplit(self.sim.gitlab_url).netloc,
                }
            )
        self.redis = Redis(self.tmp, self.niceness)
        self.redis.start()
        self.stack.callback(self.redis.stop)
        recreate_database(self.database_url)
        os.environ.update(
            {
                "FLEET_ENV": "development",
                "FLEET_DEBUG": "false",
                "FLEET_DATA_DIR": str(self.tmp / "control"),
                "FLEET_GIT_LOCAL_ROOTS": str(self.tmp),
                "FLEET_DATABASE_URL": self.database_url,
                "FLEET_REDIS_URL": self.redis.url,
                "FLEET_BROKER_URL": self.redis.url,
                "FLEET_WORKFLOW_SWEEP_SECONDS": "1",
                "FLEET_WORKFLOW_REDELIVER_SECONDS": "5",
                "FLEET_WORKFLOW_LEASE_SECONDS": "20",
                "FLEET_ROLLOUT_STEP_TIMEOUT": "30",
                "FLEET_ROLLOUT_SYNC_POLL_SECONDS": str(self.sync_interval),
                "FLEET_ROLLOUT_POLL_SECONDS": "1",
                "FLEET_PROBE_INTERVAL": "3600",
                "FLEET_DRIFT_INTERVAL": "3600",
                "DJANGO_SETTINGS_MODULE": "fleet.settings",
                **self.settings,
            }
        )
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from django.db import connections

        connections.close_all()  # a template cannot be copied while a connection is open to it
        save_template(self.database_url)
        self._import_fleet()
        for number in range(self.hosts):
            name = "ab"[number] if self.hosts <= 2 else f"h{number}"
            data_dir = self.tmp / f"host-{name}"
            env = {**os.environ, "FLEET_DATA_DIR": str(data_dir), "FLEET_REPO_CACHE_DIR": str(data_dir / "repo-cache")}
            env.update(self.host_settings.get(name, {}))
            if name in self.small_disk:
                self._mount_tmpfs(data_dir / "repo-cache", self.small_disk[name])
            host = Host(name, data_dir, env, self.concurrency, self.niceness)
            host.start()
            self.stack.callback(host.stop)
            self.worker_hosts.append(host)
        beat_dir = self.tmp / "beat"
        beat_dir.mkdir(exist_ok=True)
        self.beat = subprocess.Popen(
            supervised("beat", [*nice(self.niceness), sys.executable, "-m", "celery", "-A", "fleet", "beat",
                                "-l", "INFO", "-s", str(beat_dir / "schedule")]),
            cwd=ROOT, env=os.environ.copy(), stdout=(beat_dir / "beat.log").open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.stack.callback(self._stop_beat)
        wait_until(lambda: all(h.ready() for h in self.worker_hosts), 120, "the workers starting")

    def _mount_tmpfs(self, path: Path, size: str) -> None:
        """A disk of its own for a clone cache, so that it can be filled (needs root: mount)."""
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
        self.stack.callback(subprocess.run, ["umount", "-l", str(path)], check=False)

    def _stop_beat(self) -> None:
        if self.beat is not None and self.beat.poll() is None:
            self.beat.terminate()
            try:
                self.beat.wait(timeout=30)
            except subprocess.TimeoutExpired:
                for pid, _, _ in descendants(self.beat.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.beat.wait(timeout=10)

    @property
    def beat_log(self) -> Path:
        return self.tmp / "beat" / "beat.log"

    def _import_fleet(self) -> None:
        from sites.githost import git_host
        from sites.imports import fleet_import
        from sites.models import Site

        fleet = json.loads((self.sim.state_dir / "fleet.json").read_text())
        for entry in fleet["sites"]:
            entry["nodes"] = []  # a rollout needs no machines (and a large generated fleet may repeat a MAC)
        if self.git_transport == "https":
            host = git_host()
            for entry in fleet["sites"]:
                entry["repo_url"] = host.ensure_project(entry["code"]).clone_url
        fleet_import(data=fleet, actor="bench", kubeconfig_dir=self.sim.state_dir / "kubeconfigs")
        Site.objects.update(business_hours=[], maintenance_windows=[])

    def close(self) -> None:
        self.stack.close()

    def logs(self) -> Iterator[Path]:
        for host in self.worker_hosts:
            yield host.log_path
        yield self.beat_log
