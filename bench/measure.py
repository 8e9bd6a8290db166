"""What the benchmarks share: a wait and a private redis-server (over simulator.harness, the one home of
processes, ports and waits), and what a process tree uses (CPU time, RSS, git children) from /proc and ps."""

import atexit
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from simulator import harness
from simulator.harness import free_port as free_port  # re-exported for the benches


def tcp_open(port: int) -> bool:
    """Whether something answers on 127.0.0.1:`port` (simulator.harness.tcp_open)."""
    return harness.tcp_open("127.0.0.1", port)


def wait_for(check: Callable[[], bool], seconds: float, what: str, every: float = 0.2) -> None:
    """simulator.harness.wait_until, ending the benchmark with a sentence when it times out."""
    try:
        harness.wait_until(check, seconds, what, interval=every)
    except harness.WaitTimeout as exc:
        raise SystemExit(f"bench: {exc}") from None


def start_redis(directory: Path, *, nice: list[str] | None = None) -> "tuple[subprocess.Popen[bytes], str]":
    """A private redis-server (simulator.harness.RedisServer: a free port, no persistence) and its URL.
    It is stopped when this process exits, should the bench fail before stopping it itself (a failed
    set-up left such servers running)."""
    if not harness.RedisServer.available():
        sys.exit("bench: needs Redis (redis-server on PATH)")
    server = harness.RedisServer(directory, prefix=nice or ())
    server.start()
    assert server.proc is not None
    atexit.register(server.proc.kill)  # a no-op once the bench has stopped it
    return server.proc, server.url


LOCAL_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"


def fresh_postgres(name: str, server: str = LOCAL_POSTGRES, *, create: bool = True) -> str:
    """Database `name` dropped (and, with `create`, created anew) on `server`'s PostgreSQL; its URL."""
    import psycopg

    parts = urlsplit(server)
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}"))


def control_plane_env(data_dir: Path | str, database_url: str, **settings: str) -> None:
    """Settings for the control plane a benchmark runs (here and in the processes it starts), before
    `django.setup()`: development mode without debug, its own data directory and database, then `settings`
    (FLEET_* names, e.g. FLEET_REDIS_URL)."""
    os.environ.update(
        {
            "FLEET_ENV": "development",
            "FLEET_DEBUG": "false",
            "FLEET_DATA_DIR": str(data_dir),
            "FLEET_DATABASE_URL": database_url,
            "DJANGO_SETTINGS_MODULE": "fleet.settings",
            **settings,
        }
    )


def descendants(pid: int) -> list[tuple[int, str, int]]:
    """(pid, command name, RSS kB) of `pid` and everything below it."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,rss=,comm="], capture_output=True, text=True, check=True).stdout
    rows = [line.split(None, 3) for line in out.splitlines() if line.strip()]
    children: dict[int, list[int]] = {}
    info: dict[int, tuple[str, int]] = {}
    for p, pp, rss, comm in rows:
        children.setdefault(int(pp), []).append(int(p))
        info[int(p)] = (comm, int(rss))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        if current in info:
            found.append((current, *info[current]))
        todo.extend(children.get(current, []))
    return found


def rss_each(pid: int) -> list[float]:
    """RSS in MB of `pid` and each of its (non-git) descendants, the process itself first."""
    return [rss / 1024 for p, comm, rss in sorted(descendants(pid), key=lambda row: row[0] != pid) if comm != "git"]


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by `pid`, its live descendants and every child they reaped."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p, _, _ in descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended meanwhile: its time is in its parent's reaped-children figure
        total += sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return total / tick


def own_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of `pid` itself, without its children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:13]) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / tick, sum(values) / tick


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before[key] for key in before}


def cpu_line(cpu: dict[str, float]) -> str:
    utilisation = cpu["machine busy"] / cpu["machine total"] * 100 if cpu["machine total"] else 0.0
    parts = ", ".join(
        f"{key} {cpu[key]:.1f}" for key in ("worker", "worker main", "simulator", "redis", "this process") if key in cpu
    )
    return f"CPU s: {parts}; machine {cpu['machine busy']:.1f} busy ({utilisation:.0f}% of all cores)"


def git_processes(pid: int) -> int:
    return sum(1 for p, comm, _ in descendants(pid) if comm.startswith("git") and p != pid)
