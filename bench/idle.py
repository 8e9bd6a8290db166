"""Benchmark: what the control plane costs when nothing rolls out, beside the checks themselves done plainly.

    .venv/bin/python bench/idle.py [--sites 300] [--minutes 5] [--database sqlite|postgres] [--flower]

One simulator serves `--sites` sites, imported with their machines. A real worker (`-Q control,io -c 2`,
as `make dev` runs it) and beat run with the default intervals: the health probe of every site every
FLEET_PROBE_INTERVAL (300 s), the drift check of the FLEET_DRIFT_BATCH (500) sites checked longest ago
every FLEET_DRIFT_INTERVAL (60 s), the workflow sweep every 5 s. Once every site has been probed and
drift-checked once (start-up: at 3000 sites the drift check needs six rounds to get there), the
worker's and beat's CPU time (with the git processes they ran) is read over `--minutes`.

The baseline, measured in the same run by this process: the same reads done plainly, one site after
the other with no database, broker or task: per drift check `git ls-remote` of the site's repository
and one GET of its Kustomization; per probe the version and the node list. Its CPU per check, times
the checks a minute the default intervals ask for at this fleet size, is what the work itself costs;
the ratio says what edgefleet adds. `--flower` also runs Flower and reports its memory over the window.

Printed: CPU seconds a minute (worker, beat, plain), % of one core per 1000 sites, the ratio.
"""

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.measure import control_plane_env, cpu_seconds, free_port, fresh_postgres, start_redis, wait_for  # noqa: E402


def unique_machines(fleet: dict[str, Any]) -> dict[str, Any]:
    """The generated fleet may repeat a MAC address across thousands of sites: keep each machine once."""
    seen: set[str] = set()
    for entry in fleet["sites"]:
        kept = []
        for node in entry.get("nodes", []):
            mac = str(node.get("mac", "")).lower()
            if mac and mac in seen:
                continue
            seen.add(mac)
            kept.append(node)
        entry["nodes"] = kept
    return fleet


def plain_cpu_per_check(sites: list[Any]) -> tuple[float, float]:
    """CPU seconds of one plain drift check and one plain probe, averaged over `sites`, in this process
    (git's own CPU included), through the same adapters the worker uses, warmed up as the worker's are."""
    from sites.clusters import ClusterError, SiteCluster
    from sites.repos import RepoFailure, SiteRepo

    def cpu() -> float:
        usage = os.times()
        return usage.user + usage.system + usage.children_user + usage.children_system

    def drift(site: Any) -> None:
        with contextlib.suppress(RepoFailure):
            SiteRepo.for_site(site).head()
        with contextlib.suppress(ClusterError):
            SiteCluster.for_cluster(site.cluster).sync_status()

    def probe(site: Any) -> None:
        with contextlib.suppress(ClusterError):
            cluster = SiteCluster.for_cluster(site.cluster)
            cluster.version()
            cluster.nodes()

    figures = []
    for check in (drift, probe):
        for site in sites:  # warm-up: the client cache, as a worker has it after its first round
            check(site)
        start = cpu()
        for site in sites:
            check(site)
        figures.append((cpu() - start) / len(sites))
    return figures[0], figures[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sites", type=int, default=300)
    parser.add_argument("--minutes", type=float, default=5.0, help="the measured window, after start-up")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--flower", action="store_true", help="run Flower too and report its memory")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="edgefleet-bench-idle-"))
    from simulator.testing import running_simulator

    simulated = contextlib.ExitStack()
    sim = simulated.enter_context(running_simulator(sites=args.sites, state_dir=tmp / "sim", startup_timeout=600))
    redis_proc, redis_url = start_redis(tmp)
    database_url = fresh_postgres("bench_idle") if args.database == "postgres" else f"sqlite:///{tmp / 'idle.sqlite3'}"
    control_plane_env(
        tmp,
        database_url,
        FLEET_REDIS_URL=redis_url,
        FLEET_BROKER_URL=redis_url,
        FLEET_GIT_LOCAL_ROOTS=str(sim.state_dir),
        FLEET_FLOWER_PORT=str(free_port()),
    )
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from rollouts.models import SiteSyncState
    from sites.imports import fleet_import
    from sites.models import Cluster, Site

    call_command("migrate", verbosity=0)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        with simulated:
            fleet = unique_machines(json.loads((sim.state_dir / "fleet.json").read_text()))
            fleet_import(data=fleet, actor="bench", kubeconfig_dir=sim.state_dir / "kubeconfigs")
            sites = list(Site.objects.select_related("cluster").order_by("code"))
            print(f"{len(sites)} simulated sites imported ({sum(len(e['nodes']) for e in fleet['sites'])} machines)")

            commands = {
                "worker": [sys.executable, "-m", "celery", "-A", "fleet", "worker", "-Q", "control,io", "-c", "2",
                           "-l", "WARNING", "-n", f"idle-{os.getpid()}@%h"],
                "beat": [sys.executable, "-m", "celery", "-A", "fleet", "beat", "-l", "WARNING",
                         f"--pidfile={tmp / 'beat.pid'}"],
            }  # fmt: skip
            if args.flower:
                commands["flower"] = [sys.executable, "-m", "fleet.flower"]
            for name, command in commands.items():
                log = (tmp / f"{name}.log").open("ab")
                processes[name] = subprocess.Popen(command, cwd=ROOT, env=os.environ.copy(), stdout=log, stderr=log)

            def started() -> bool:
                """Every site probed and drift-checked once: a first check writes the site's whole drift
                row and health, a steady one only moves `checked_at`; beat checks FLEET_DRIFT_BATCH sites
                a round, so a large fleet takes several rounds to get there."""
                probed = Cluster.objects.filter(last_probe_at__isnull=False).count()
                checked = SiteSyncState.objects.filter(checked_at__isnull=False).count()
                return probed >= len(sites) and checked >= len(sites)

            # The first probe round now, as `make dev` asks for it after an import (beat's comes an interval later)
            from fleet.celery import app as celery_app

            celery_app.send_task("sites.probe_all", queue="control")
            t0 = time.monotonic()
            rounds = -(-len(sites) // settings.FLEET_DRIFT_BATCH)
            start_up = 900 + 2 * rounds * settings.FLEET_DRIFT_INTERVAL
            wait_for(started, start_up, "a first check of every site", every=1.0)
            print(f"start-up (every site probed and drift-checked once): {time.monotonic() - t0:.0f} s")

            def rss_mb(name: str) -> float:
                status = Path(f"/proc/{processes[name].pid}/status").read_text()
                return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024

            before = {name: cpu_seconds(proc.pid) for name, proc in processes.items()}
            flower_before = rss_mb("flower") if args.flower else 0.0
            start = time.monotonic()
            time.sleep(args.minutes * 60)  # the window itself: the processes work on their own meanwhile
            minutes = (time.monotonic() - start) / 60
            per_minute = {name: (cpu_seconds(proc.pid) - before[name]) / minutes for name, proc in processes.items()}

            drift_cpu, probe_cpu = plain_cpu_per_check(sites[: min(len(sites), 100)])
            drift_per_minute = min(len(sites), settings.FLEET_DRIFT_BATCH) * 60 / settings.FLEET_DRIFT_INTERVAL
            probe_per_minute = len(sites) * 60 / float(settings.CELERY_BEAT_SCHEDULE["probe-all-sites"]["schedule"])
            plain = drift_cpu * drift_per_minute + probe_cpu * probe_per_minute

            control = per_minute["worker"] + per_minute["beat"]
            per_thousand = 1000 / len(sites)
            rates = f"{drift_per_minute:.0f} drift checks and {probe_per_minute:.0f} probes a minute"
            print(f"window: {minutes:.1f} min; {rates}")
            for name, value in per_minute.items():
                print(f"  {name:<7} {value:6.2f} CPU s/min = {value / 60 * 100:5.1f} % of a core")
            each = f"{drift_cpu * 1000:.1f} ms a drift check, {probe_cpu * 1000:.1f} ms a probe"
            print(f"  plain   {plain:6.2f} CPU s/min ({each})")
            print(
                f"edgefleet idle (worker + beat): {control / 60 * 100 * per_thousand:.1f} % of a core per 1000 sites; "
                f"plain {plain / 60 * 100 * per_thousand:.1f} %; ratio {control / plain:.2f}x"
            )
            if args.flower:
                growth = (rss_mb("flower") - flower_before) / minutes
                print(f"flower RSS {flower_before:.0f} MB -> {rss_mb('flower'):.0f} MB ({growth:+.2f} MB/min)")
    finally:
        for proc in processes.values():
            proc.terminate()
        for proc in processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
        redis_proc.terminate()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
