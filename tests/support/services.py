"""Real external services for the tests: a Redis (the machine's, or a private one), a Celery worker and beat.

Nothing here is mocked: the worker is `celery -A fleet worker` in a subprocess, on the same database
the test uses (tests that use it must be `transaction=True` so their rows are committed and visible).
"""

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings

from simulator.harness import RedisServer, log_tail, start_process, stop_process, tcp_open, wait_until

ROOT = Path(__file__).resolve().parent.parent.parent


@contextmanager
def redis_server() -> Iterator[str]:
    """Yield the URL of a Redis for tests: FLEET_TEST_REDIS_URL, else a private redis-server for this test
    session (two test runs on one machine then never take each other's messages), else the local 6379."""
    url = os.environ.get("FLEET_TEST_REDIS_URL")
    if url:
        yield url
        return
    if not RedisServer.available():
        if not tcp_open("127.0.0.1", 6379):
            raise RuntimeError(
                "the integration tests need Redis: install redis-server (Debian: apt-get install redis-server)"
            )
        yield "redis://127.0.0.1:6379/13"
        return
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            yield server.url
        finally:
            server.stop()


def database_url() -> str:
    """The URL of the database the test run uses (after pytest-django switched to the test database)."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


class Worker:
    """A real Celery worker subprocess, with helpers to kill and restart it."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        queues: str = "control,io",
        concurrency: int = 2,
        *,
        as_deployed: bool = False,
    ):
        """`as_deployed`: run the worker with the options of the Procfile (gossip, mingle and heartbeats
        on), not the quieter ones the other tests use."""
        self.env = env
        self.as_deployed = as_deployed
        self.log_path = log_path
        self.queues = queues
        self.concurrency = concurrency
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def start(self) -> None:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc = start_process(
            [
                sys.executable, "-m", "celery", "-A", "fleet", "worker",
                "-Q", self.queues, "-c", str(self.concurrency), "-P", "prefork",
                *([] if self.as_deployed else ["--without-gossip", "--without-mingle"]),
                "-l", "INFO", "-n", f"test-{os.getpid()}@%h",
            ],
            log=self.log_path, cwd=ROOT, env=self.env,
        )  # fmt: skip
        wait_until(self._ready, 90, "celery worker ready", explain=lambda: log_tail(self.log_path))

    def _ready(self) -> bool:
        self.check_alive("starting")
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            return b" ready." in log.read()

    def check_alive(self, doing: str = "") -> None:
        """Raise (with the log's tail) if the worker is not running: pass it as `wait_until(every=...)`."""
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise RuntimeError(f"celery worker exited ({code}) {doing}:\n{log_tail(self.log_path)}")

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM and wait; with `kill`, SIGKILL the worker and its children: a crash, not a shutdown."""
        if self.proc is None:
            return
        stop_process(self.proc, kill=kill)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @contextmanager
    def reconfigured(self, **env: str) -> Iterator["Worker"]:
        """The worker restarted with `env` added, then restarted as it was: a later test never gets a worker
        still configured for an earlier one (the session worker is shared)."""
        previous = dict(self.env)
        self.env.update(env)
        self.restart()
        try:
            yield self
        finally:
            self.env.clear()
            self.env.update(previous)
            self.restart()


def worker_env(redis_url: str, data_dir: Path) -> dict[str, str]:
    env = {**os.environ}
    env.update(
        {
            "FLEET_ENV": "test",
            "FLEET_DATABASE_URL": database_url(),
            "FLEET_REDIS_URL": redis_url,
            "FLEET_DATA_DIR": str(settings.DATA_DIR),
            "FLEET_SECRET_KEY": settings.SECRET_KEY,
            "FLEET_SECRET_KEYS": ",".join(settings.FLEET_SECRET_KEYS),
            "FLEET_REPO_CACHE_DIR": str(data_dir / "repo-cache"),
            "FLEET_GIT_LOCAL_ROOTS": ",".join(str(root) for root in settings.FLEET_GIT_LOCAL_ROOTS),
        }
    )
    return env


# A production configuration as .env.example documents it (values generated the way it says), for tests
# that start a process with FLEET_ENV=production.
PRODUCTION_ENV = {
    "FLEET_ENV": "production",
    "FLEET_SECRET_KEY": "f3Q9xk2LwP8vR7tY1uZ0aB4cD6eG5hJ-mN_oS9qT2rU7vW1xY3zA8bC0dE6fH4gJ2k",
    "FLEET_SECRET_KEYS": "P2w9bVmM5cC8r8s7Yq0sQ3qL1bQfYpKqZCw0n4m6m5Q=",
    "FLEET_METRICS_TOKEN": "m7Rk2pQ9wX4tV8nB3cF6yH1jL5sD0gA2zE7uI9oP4qW",
    "FLEET_ALLOWED_HOSTS": "fleet.example.com",
    "FLEET_TRUSTED_PROXIES": "1",
}


class Beat:
    """A real `celery -A fleet beat` with the database scheduler, logging to `directory/beat.log`."""

    def __init__(self, env: dict[str, str], directory: Path) -> None:
        self.log_path = directory / "beat.log"
        self.proc = start_process(
            [sys.executable, "-m", "celery", "-A", "fleet", "beat", "-l", "INFO",
             "--pidfile", str(directory / "beat.pid"), "-s", str(directory / "beat-schedule")],
            log=self.log_path, cwd=ROOT, env=env,
        )  # fmt: skip

    def stop(self) -> None:
        stop_process(self.proc)


def parse_redis(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 6379
