"""Real external services for the tests: a Redis (the machine's, or a private one) and a Celery worker.

Nothing here is mocked: the worker is `celery -A fleet worker` in a subprocess, on the same database
the test uses (tests that use it must be `transaction=True` so their rows are committed and visible).
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_server() -> Iterator[str]:
    """Yield the URL of a Redis for tests: FLEET_TEST_REDIS_URL, else a private redis-server for this test
    session (two test runs on one machine then never take each other's messages), else the local 6379."""
    url = os.environ.get("FLEET_TEST_REDIS_URL")
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        if not tcp_open("127.0.0.1", 6379):
            raise RuntimeError(
                "the integration tests need Redis: install redis-server (Debian: apt-get install redis-server)"
            )
        yield "redis://127.0.0.1:6379/13"
        return
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )
        try:
            _wait_for(lambda: tcp_open("127.0.0.1", port), 10, "private redis-server")
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


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
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "fleet", "worker",
                "-Q", self.queues, "-c", str(self.concurrency), "-P", "prefork",
                *([] if self.as_deployed else ["--without-gossip", "--without-mingle"]),
                "-l", "INFO", "-n", f"test-{os.getpid()}@%h",
            ],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        _wait_for(self._ready, 30, "celery worker")

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"celery worker exited with {self.proc.returncode}; see {self.log_path}")
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            return b" ready." in log.read()

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            # SIGKILL the whole process group's children too: a crash, not a shutdown.
            subprocess.run(["pkill", "-KILL", "-P", str(self.proc.pid)], check=False)
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


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


def _wait_for(check, seconds: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {seconds} s")


def parse_redis(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 6379
