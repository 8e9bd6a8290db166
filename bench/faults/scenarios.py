"""The fault experiments, one function each: `scenario(lab, scale) -> Outcome`; here those whose fault is
in the control plane's own processes (Redis, PostgreSQL, workers, hosts, disks, clocks), in
bench/faults/outside.py those of the edge and the git host.

Each builds its lab (bench.faults.lab), runs a rollout with its fault injected mid-wave
(bench.faults.experiment.run) and adds the checks particular to it. `scale` shortens the fault's
duration for the suite-sized runs (1.0: the durations the issue names).
"""

import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.faults.experiment import Shape, run
from bench.faults.lab import Lab, Timeout, wait_until
from bench.faults.verdict import Outcome

SCENARIOS: dict[str, Callable[..., Outcome]] = {}


def scenario(fn: Callable[..., Outcome]) -> Callable[..., Outcome]:
    SCENARIOS[fn.__name__.replace("_", "-")] = fn
    return fn


def progressed(rollout: Any, done_then: int) -> bool:
    rollout.refresh_from_db()
    return bool(rollout.done > done_then)


def log_count(paths: Any, text: bytes) -> int:
    return sum(path.read_bytes().count(text) for path in paths if path.exists())


def worker_restarts(lab: Lab) -> int:
    return log_count([h.log_path for h in lab.worker_hosts], b"; restart ")


@scenario
def redis(lab: Lab, scale: float = 1.0) -> Outcome:
    """Redis SIGKILLed and restarted empty mid-wave; later in the same wave, Redis away for 60 s."""
    outage = 60 * scale
    outcome = Outcome("redis", f"Redis SIGKILLed and restarted empty, then unavailable for {outage:.0f} s")
    assert lab.redis is not None
    pids = {h.name: [p.pid for p in h.procs] for h in lab.worker_hosts}

    def inject(lab: Lab, rollout: Any) -> None:
        assert lab.redis is not None
        lab.redis.kill()
        lab.redis.start()  # empty: no persistence
        done_then = rollout.done
        try:
            wait_until(lambda: (rollout.refresh_from_db(), rollout.done)[1] >= done_then + 2, 120,
                       "two more sites done after the kill")  # fmt: skip
            outcome.check("progress after the restart", True, f"{rollout.done - done_then} more sites")
        except Timeout as exc:
            outcome.check("progress after the restart", False, str(exc))
        lab.redis.kill()
        time.sleep(outage)  # the fault itself: nothing listens on the port
        lab.redis.start()

    run(lab, outcome, inject, recovery=90)
    outcome.check("workers never restarted", worker_restarts(lab) == 0, f"{worker_restarts(lab)} restarts")
    same = pids == {h.name: [p.pid for p in h.procs] for h in lab.worker_hosts}
    outcome.check("same worker processes", same)
    unrecoverable = log_count(lab.logs(), b"Unrecoverable error")
    outcome.check("no unrecoverable error logged", unrecoverable == 0, f"{unrecoverable}")
    return outcome


def terminate_connections(database: str) -> int:
    """pg_terminate_backend of every connection to `database` except this process's own."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [database],
        )
        return int(cursor.fetchone()[0])


@scenario
def postgres(lab: Lab, scale: float = 1.0) -> Outcome:
    """Every other connection to the database terminated, five times over a wave (the shared server
    cannot be restarted here: terminating all its connections is the stand-in for a restart)."""
    rounds = 5
    outcome = Outcome("postgres", f"pg_terminate_backend of all workers' and beat's connections, {rounds} times")
    from django.conf import settings

    database = settings.DATABASES["default"]["NAME"]
    killed: list[int] = []

    def inject(lab: Lab, rollout: Any) -> None:
        for _ in range(rounds):
            # Each round once the workers are connected again and a site more is done (a wave goes on).
            done_then = rollout.done
            try:
                wait_until(lambda n=done_then: progressed(rollout, n), 120, "a site done")  # type: ignore[misc]
            except Timeout:
                break
            killed.append(terminate_connections(database))

    run(lab, outcome, inject, recovery=90)
    outcome.figures["connections terminated"] = "+".join(str(n) for n in killed)
    outcome.check("connections were terminated", sum(killed) > 0, f"{sum(killed)}")
    outcome.check("workers never restarted", worker_restarts(lab) == 0, f"{worker_restarts(lab)} restarts")
    return outcome


@scenario
def worker_kills(lab: Lab, scale: float = 1.0) -> Outcome:
    """20 random SIGKILLs of worker processes (prefork children and main processes) over the rollout;
    fleet.supervise restarts a killed main process (nobody does by hand)."""
    kills = 20
    outcome = Outcome("worker-kills", f"{kills} SIGKILLs of worker processes (children and main processes)")
    dice = random.Random(16)  # noqa: S311 - which process dies, not a secret
    done_kills: list[str] = []

    def inject(lab: Lab, rollout: Any) -> None:
        deadline = time.monotonic() + 600
        while len(done_kills) < kills and time.monotonic() < deadline:
            if (rollout.refresh_from_db(), rollout.state)[1] != "running":
                break
            victims = [v for host in lab.worker_hosts for v in host.worker_processes()]
            if not victims:
                time.sleep(0.5)
                continue
            pid, kind = dice.choice(victims)
            try:
                os.kill(pid, signal.SIGKILL)
                done_kills.append(kind)
            except ProcessLookupError:
                pass
            time.sleep(dice.uniform(0.2, 1.0) * max(scale, 0.3))

    run(lab, outcome, inject, recovery=120, shape=Shape(max_parallel=3, trigger=0.1))
    mains, children = done_kills.count("main"), done_kills.count("child")
    outcome.figures["killed"] = f"{mains} main + {children} children"
    outcome.check("processes were killed", len(done_kills) >= min(kills, 5), f"{len(done_kills)}")
    return outcome


def pushes_by_host(lab: Lab) -> dict[str, dict[str, int]]:
    """{site code: {host: pushes}} from each host's worker log (sites.repos logs every push it makes)."""
    found: dict[str, dict[str, int]] = {}
    for host in lab.worker_hosts:
        for line in host.log_path.read_text(errors="replace").splitlines():
            if ": pushed " in line and " on top of " in line:
                code = line.split(": pushed ")[0].rsplit(" ", 1)[-1]
                found.setdefault(code, {}).setdefault(host.name, 0)
                found[code][host.name] += 1
    return found


@scenario
def hosts(lab: Lab, scale: float = 1.0) -> Outcome:
    """Two worker hosts (separate FLEET_DATA_DIR: clone caches and locks), one PostgreSQL and one Redis:
    a rollout served by both, and mid-wave a second rollout, of another application, to the same sites:
    one commit per site and rollout, and every site keeps both applications' files."""
    from bench.faults.experiment import finished, start_rollout
    from bench.faults.verdict import check_rollout, paths_at_head

    outcome = Outcome("hosts", "2 worker hosts; a second application rolled out to the same sites at once")
    second: list[Any] = []

    def inject(lab: Lab, rollout: Any) -> None:
        second.append(start_rollout("2.0.0", Shape(max_parallel=6), app_name="kiosk"))
        wait_until(lambda: finished(second[0]), 600, "the second rollout finishing")

    run(lab, outcome, inject, recovery=60)
    other = Outcome("hosts", "the second rollout")
    check_rollout(other, rollout=second[0], repo_path=lab.sim.repo_path, kubeconfig_path=lab.sim.kubeconfig_path,
                  deployment=("kiosk", "kiosk"))  # fmt: skip
    for c in other.checks:
        outcome.check(f"kiosk: {c.name}", c.ok, c.detail)
    outcome.figures["kiosk commits"] = other.figures["commits"]
    outcome.figures["kiosk succeeded"] = other.figures["succeeded"]
    both = {"apps/pos-bridge/deployment.yaml", "apps/kiosk/deployment.yaml"}
    missing = [code for code in lab.sim.codes if not both <= paths_at_head(lab.sim.repo_path(code))]
    outcome.check("every site keeps both applications", not missing, ", ".join(missing[:5]) or f"{len(lab.sim.codes)}")
    by_host = pushes_by_host(lab)
    served = {name: sum(hosts.get(name, 0) for hosts in by_host.values()) for name in ("a", "b")}
    mixed = sum(1 for hosts in by_host.values() if len(hosts) == 2)
    outcome.figures["pushes by host"] = f"a {served['a']}, b {served['b']}; {mixed} sites written from both"
    outcome.check("both hosts served", all(served.values()), str(served))
    return outcome


def fill(path: Path) -> int:
    """Write a file into `path` until its disk is full to the last byte; the bytes written."""
    written = 0
    with (path / "filler").open("wb", buffering=0) as out:
        for chunk in (1 << 20, 65536, 4096, 512, 1):
            try:
                while True:
                    written += out.write(b"\0" * chunk)
            except OSError:
                continue
    # Anything a process still has room for (a half-written file) fails too: room for nothing more.
    return written


@scenario
def disk_full(lab: Lab, scale: float = 1.0) -> Outcome:
    """Host b's clone cache (its own 16 MB tmpfs) filled to the last byte mid-wave for 60 s, while host a
    is fine: sites are not failed for a worker's full disk."""
    hold = 60 * scale
    outcome = Outcome("disk-full", f"host b's clone-cache disk full for {hold:.0f} s mid-wave (host a fine)")
    cache = next(h for h in lab.worker_hosts if h.name == "b").data_dir / "repo-cache"

    def inject(lab: Lab, rollout: Any) -> None:
        written = fill(cache)
        outcome.figures["filled"] = f"{written // 1024} kB"
        time.sleep(hold)
        from fleet.workflows.models import StepRun

        errors = StepRun.objects.filter(message__contains="No space left on device").count()
        outcome.check("the full disk was hit", errors > 0, f"{errors} step attempts met 'No space left on device'")
        (cache / "filler").unlink()

    run(lab, outcome, inject, recovery=90)
    pushes = pushes_by_host(lab).values()
    outcome.figures["pushes by host"] = {name: sum(n.get(name, 0) for n in pushes) for name in "ab"}
    failed = [c for c, f in outcome.facts.items() if f["state"] != "succeeded"]
    outcome.check("no site failed or skipped for the full disk", not failed,
                  "; ".join(f"{c}: {outcome.facts[c]['error'][:100]}" for c in failed[:3]))  # fmt: skip
    return outcome


SKEW_DIR = Path(__file__).resolve().parent / "skew"


@scenario
def clock_skew(lab: Lab, scale: float = 1.0) -> Outcome:
    """Two worker hosts whose clocks are 30 s behind and 30 s ahead (beat and the database on time), from
    the start: bench/faults/skew/sitecustomize.py shifts `time.time` and `timezone.now` in their processes."""
    outcome = Outcome("clock-skew", "host a's clock 30 s behind, host b's 30 s ahead (beat and PostgreSQL on time)")

    def inject(lab: Lab, rollout: Any) -> None:
        return None  # the skew is there from the start

    run(lab, outcome, inject, recovery=90)
    by_host = pushes_by_host(lab)
    served = {name: sum(hosts.get(name, 0) for hosts in by_host.values()) for name in ("a", "b")}
    outcome.figures["pushes by host"] = f"a {served['a']}, b {served['b']}"
    outcome.check("both hosts served", all(served.values()), str(served))
    discarded = log_count([h.log_path for h in lab.worker_hosts], b"Discarding revoked task")
    outcome.figures["expired messages discarded"] = discarded
    return outcome


def skewed(seconds: int) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(SKEW_DIR), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "FLEET_EXPERIMENT_CLOCK_SKEW": str(seconds)}


# What each scenario's lab needs besides the defaults (bench.faults.lab.Lab's fields).
LAB_OPTIONS: dict[str, dict[str, Any]] = {
    "redis": {"hosts": 1},
    "postgres": {"hosts": 1},
    "worker-kills": {"hosts": 2},
    "edge": {"hosts": 1},
    "git-host": {"hosts": 1, "git_transport": "https"},
    "push-race": {"hosts": 1},
    "hosts": {"hosts": 2},
    "disk-full": {"hosts": 2, "small_disk": {"b": "16m"}},
    "clock-skew": {"hosts": 2, "host_settings": {"a": skewed(-30), "b": skewed(30)}},
}


def lab_options(name: str) -> dict[str, Any]:
    return dict(LAB_OPTIONS.get(name, {}))
