"""Processes, ports and waits for the tests and the benchmarks: the one copy of each.

    from simulator.harness import RedisServer, free_port, start_process, stop_process, tcp_open, wait_until

    wait_until(lambda: sim.summary(code)["sync"]["applied"], 20, "the commit applied")
    proc = start_process([sys.executable, "-m", "fleet.flower"], log=tmp / "flower.log", env=env)
    stop_process(proc)                      # SIGTERM, wait, then SIGKILL

It lives in `simulator` because that is the one package that `tests/`, `bench/` and the simulator's own
harness (`simulator/testing.py`) can all import: `tests/` is not installed and imports Django, and the
simulator imports nothing from the Django apps. Standard library only (`RedisServer` asks the `redis`
client which process answers, imported where it is used).

Every long-running process of a test or a benchmark (redis-server, a Celery worker or beat, the simulator,
Flower, the supervisor) is started with `start_process`, which tells the `on_start` listeners: the test
suite's plugin (tests/support/integration.py) uses that to insist such tests are marked `integration`.
"""

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# Called with the command of every process `start_process` starts (the test plugin listens here).
on_start: list[Callable[[Sequence[str]], None]] = []


class WaitTimeout(AssertionError):
    """`wait_until` gave up: the message names what was awaited and the last value the predicate gave."""


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float = 10.0,
    what: str = "",
    *,
    interval: float = 0.1,
    every: Callable[[], object] | None = None,
    explain: Callable[[], str] | None = None,
) -> T:
    """Poll `predicate()` until it returns something truthy and return that; after `timeout` seconds raise
    WaitTimeout naming `what` and the last value observed (plus `explain()`, e.g. a log's tail).

    `every()` runs between polls (a sweep, as beat would; or a check that raises when a process died).
    """
    deadline = time.monotonic() + timeout
    while True:
        last = predicate()
        if last:
            return last  # truthy, hence not None
        if time.monotonic() >= deadline:
            detail = f"\n{explain()}" if explain is not None else ""
            name = what or getattr(predicate, "__name__", repr(predicate))
            raise WaitTimeout(f"{name} did not happen within {timeout:g} s (last value: {last!r}){detail}")
        if every is not None:
            every()
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listened on a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts a TCP connection on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def start_process(
    args: Sequence[str],
    *,
    log: Path | None = None,
    cwd: Path | str | None = None,
    env: dict[str, str] | None = None,
) -> "subprocess.Popen[bytes]":
    """Start a long-running process, its output appended to `log` (discarded without one)."""
    for listener in on_start:
        listener(args)
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen(list(args), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    finally:
        if log is not None:
            out.close()  # type: ignore[union-attr]


def stop_process(proc: "subprocess.Popen[bytes]", *, timeout: float = 20.0, kill: bool = False) -> int:
    """Stop `proc` and return its exit code: SIGTERM and wait (then SIGKILL); with `kill`, SIGKILL it and
    its children at once, a crash rather than a shutdown."""
    if proc.poll() is None:
        if kill:
            subprocess.run(["pkill", "-KILL", "-P", str(proc.pid)], check=False)  # noqa: S603, S607
            proc.kill()
        else:
            proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    return int(proc.returncode)


def child_processes(parent: int | None = None) -> list[tuple[int, str]]:
    """(pid, command name) of every process whose parent is `parent` (this process by default), from /proc."""
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # gone meanwhile
        name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        if int(rest[1]) == parent:
            found.append((int(entry), name))
    return found


class RedisServer:
    """A redis-server of our own on a free port (never the machine's shared Redis), which a test may stop,
    SIGKILL and start again. No persistence: a restart loses every queued message, as a crash would."""

    def __init__(self, directory: Path, *, prefix: Sequence[str] = ()) -> None:
        """`prefix`: put in front of the command, e.g. `["nice", "-n", "10"]`."""
        self.directory = Path(directory)
        self.prefix = list(prefix)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    def start(self) -> None:
        """Start it on its port. At the first start, if another process took the port meanwhile (free_port()
        only found it free a moment ago), move to a new one, so a client never talks to somebody else's
        server; a restart keeps the port its clients know, and fails if it cannot have it."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("needs redis-server on PATH (Debian: apt-get install redis-server)")
        for _ in range(5):
            args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            self.proc = start_process(
                [*self.prefix, binary, *args, "--dir", str(self.directory)], log=self.directory / "redis.log"
            )
            if self._serving():
                self.started = True
                return
            stop_process(self.proc, kill=True)
            if self.started:
                break
            self.port = free_port()
        raise RuntimeError(f"a private redis-server did not start (see {self.directory / 'redis.log'})")

    def _serving(self) -> bool:
        """True once our own process answers on the port (not another server that holds it)."""
        import redis  # imported here so that the rest of this module needs no dependency

        proc = self.proc
        if proc is None:
            return False

        def answer() -> str:
            if proc.poll() is not None:
                return "exited"  # it could not bind: the port is someone else's
            if not tcp_open("127.0.0.1", self.port):
                return ""
            pid = redis.Redis(port=self.port, socket_timeout=2).info("server").get("process_id")
            return "ours" if pid == proc.pid else "theirs"

        try:
            return wait_until(answer, 10, "redis-server answering", interval=0.05) == "ours"
        except WaitTimeout:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown, nothing saved (the server keeps nothing on disk anyway)."""
        if self.proc is not None:
            stop_process(self.proc, kill=True)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=10)
            self.proc = None


def log_has(path: Path, *texts: bytes) -> bool:
    """True if the file exists and holds any of `texts`."""
    if not path.exists():
        return False
    data = path.read_bytes()
    return any(text in data for text in texts)


def log_tail(path: Path, chars: int = 3000) -> str:
    """The end of a log, for a failure message."""
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"({path} does not exist)"
