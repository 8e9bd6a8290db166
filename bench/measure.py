"""What the benchmarks share: a free port, a wait, a private redis-server, and what a process tree uses
(CPU time, RSS, git children) read from /proc and ps."""

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(check: Callable[[], bool], seconds: float, what: str, every: float = 0.2) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {what} did not happen within {seconds:.0f} s")
        time.sleep(every)


def start_redis(directory: Path, *, nice: list[str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """A private redis-server on a free port (no persistence, files in `directory`) and its URL."""
    binary = shutil.which("redis-server") or sys.exit("bench: needs Redis (redis-server on PATH)")
    port = free_port()
    arguments = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    arguments += ["--dir", str(directory)]
    process = subprocess.Popen([*(nice or []), binary, *arguments], stdout=subprocess.DEVNULL)
    wait_for(lambda: tcp_open(port), 10, "redis-server", every=0.05)
    return process, f"redis://127.0.0.1:{port}/0"


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
