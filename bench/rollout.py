"""Benchmark: a rollout driven by the workflow engine against a plain script doing the same I/O.

    .venv/bin/python bench/rollout.py [--sites 300] [--concurrency 2] [--max-parallel 50] [--timeout 1800]
                                      [--git-transport file|https] [--database sqlite|postgres]

One simulator serves `--sites` sites (agents polling every --sync-interval s); both sides roll the demo
release to every site in three waves (1%, 10%, 100%, zero bake): orchestrated, by `rollout_start` on a
Celery worker of `--concurrency` processes; plain, by `--concurrency` processes of threads doing each
site's I/O (bench/rollout_plain.py). Both sides run at `--niceness` so the simulated edge goes first.
Printed: wall time of each, their ratio, overhead per site, CPU, the worker's RSS and git processes left.
What it measures and why it is set up so: docs/PERFORMANCE.md, "Rollouts".
"""

import argparse
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing import get_context
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the worktree's packages, and `simulator` the package, not bench/simulator.py

from bench.measure import (  # noqa: E402
    control_plane_env,
    cpu_delta,
    cpu_line,
    cpu_seconds,
    fresh_postgres,
    git_processes,
    machine_busy,
    own_cpu_seconds,
    rss_each,
    start_redis,
    wait_for,
)
from bench.rollout_plain import plain_chunk  # noqa: E402
from fleet.audit.choices import Source  # noqa: E402  (after the path: this tree's fleet, not an installed one)

WAVES = [{"name": "1%", "percent": 1}, {"name": "10%", "percent": 10}, {"name": "100%", "percent": 100}]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sites", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes, and plain processes")
    parser.add_argument(
        "--pool",
        choices=["prefork", "threads"],
        default="prefork",
        help="prefork: one worker with --concurrency children; threads: --concurrency workers of --threads each",
    )
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process with --pool threads")
    parser.add_argument("--max-parallel", type=int, default=50, help="sites in flight, both sides")
    parser.add_argument("--sync-interval", type=float, default=0.2, help="the simulated agents' poll interval")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument(
        "--niceness", type=int, default=10, help="niceness of both sides' processes, so the simulated edge goes first"
    )
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="print CPU use (machine, simulator), sites in flight and queues twice a second",
    )
    parser.add_argument(
        "--warmup", type=int, default=20, help="sites of a first, small rollout before memory is measured (0: none)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgres"],
        default="sqlite",
        help="sqlite: a file in the temporary directory (or FLEET_DATABASE_URL when set); postgres: a fresh "
        "bench_rollout database on the local PostgreSQL (dropped and created anew)",
    )
    parser.add_argument(
        "--git-transport",
        choices=["file", "https"],
        default="file",
        help="file: bare repositories by path; https: projects on the simulator's git host, over HTTPS",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="edgefleet-bench-rollout-"))
    if not shutil.which("redis-server"):  # before the simulator starts
        sys.exit("bench: needs redis-server on PATH")
    from simulator.testing import running_simulator

    # The simulator first: with https the settings (read once, at django.setup) name its git host.
    simulated = contextlib.ExitStack()
    sim = simulated.enter_context(
        running_simulator(
            sites=args.sites, state_dir=tmp / "sim", sync_interval=args.sync_interval, startup_timeout=600
        )
    )
    if args.git_transport == "https":
        os.environ.update(
            {
                "FLEET_GIT_HOST": "gitlab",
                "FLEET_GITLAB_URL": sim.gitlab_url,
                "FLEET_GITLAB_TOKEN": sim.gitlab_token,
                "FLEET_GITLAB_GROUP": sim.git_group,
                "FLEET_GIT_CA_FILE": str(sim.ca_cert),
                "FLEET_GIT_HOSTS": urlsplit(sim.gitlab_url).netloc,
            }
        )
    nice = ["nice", "-n", str(args.niceness)] if args.niceness else []
    redis_proc, redis_url = start_redis(tmp, nice=nice)
    if args.database == "postgres":
        database_url = fresh_postgres("bench_rollout")
    else:
        database_url = os.environ.get("FLEET_DATABASE_URL") or f"sqlite:///{tmp / 'bench.sqlite3'}"
    control_plane_env(
        tmp,
        database_url,
        FLEET_REDIS_URL=redis_url,
        FLEET_BROKER_URL=redis_url,
        FLEET_WORKFLOW_SWEEP_SECONDS="1",
        FLEET_ROLLOUT_SYNC_POLL_SECONDS=str(args.sync_interval),
    )
    import django
    import redis

    django.setup()
    from django.core.management import call_command
    from django.db.models import Sum

    from fleet.workflows.engine import sweep
    from fleet.workflows.models import StepRun, WorkflowRun
    from rollouts import demo, services
    from rollouts.choices import RolloutState
    from rollouts.models import Application, Rollout
    from rollouts.rendering import render_site_files
    from sites.githost import git_host
    from sites.imports import fleet_import
    from sites.models import Site

    def executed_steps() -> int:
        """Attempts at the rollout's steps: a waiting row of the timeline counts each of its polls."""
        total = StepRun.objects.filter(run__kind__startswith="rollout.").aggregate(n=Sum("polls"))["n"]
        return int(total or 0)

    def timeline_rows() -> int:
        return StepRun.objects.filter(run__kind__startswith="rollout.").count()

    call_command("migrate", verbosity=0)
    logging.getLogger("sites.repos").setLevel(logging.WARNING)  # one line per push, thousands of them
    logging.getLogger("sites.githost").setLevel(logging.WARNING)  # one line per project ensured
    workers: list[subprocess.Popen[bytes]] = []
    sweeper = None
    stop = threading.Event()
    try:
        with simulated:
            t0 = time.perf_counter()
            # Without their machines: a rollout does not need them, and the generated fleet may repeat a
            # MAC address at thousands of sites (the import rightly refuses that).
            fleet = json.loads((sim.state_dir / "fleet.json").read_text())
            for entry in fleet["sites"]:
                entry["nodes"] = []
            if args.git_transport == "https":
                host = git_host()
                for entry in fleet["sites"]:
                    entry["repo_url"] = host.ensure_project(entry["code"]).clone_url
                print(f"{args.sites} projects ensured on the git host in {time.perf_counter() - t0:.1f} s")
                t0 = time.perf_counter()
            fleet_import(data=fleet, actor="bench", kubeconfig_dir=sim.state_dir / "kubeconfigs")
            Site.objects.update(business_hours=[], maintenance_windows=[])
            print(f"{args.sites} simulated sites imported in {time.perf_counter() - t0:.1f} s")

            log_path = tmp / "worker.log"
            if args.pool == "prefork":
                pools = [["-P", "prefork", "-c", str(args.concurrency)]]
            else:
                pools = [["-P", "threads", "-c", str(args.threads)]] * args.concurrency
            for number, pool_args in enumerate(pools):
                command = [*nice, sys.executable, "-m", "celery", "-A", "fleet", "worker", "-Q", "control,io",
                           *pool_args, "--without-gossip", "--without-mingle", "-l", "WARNING",
                           "-n", f"bench-{number}-{os.getpid()}@%h"]  # fmt: skip
                workers.append(
                    subprocess.Popen(
                        command, cwd=ROOT, env=os.environ.copy(), stdout=log_path.open("ab"), stderr=subprocess.STDOUT
                    )
                )

            def sweeping() -> None:  # what beat does
                while not stop.wait(1.0):
                    try:
                        sweep()
                    except Exception as exc:  # noqa: BLE001  # a hiccup: the next tick tries again
                        print(f"bench: sweep failed: {exc}")

            def cpu_snapshot() -> dict[str, float]:
                busy, total = machine_busy()
                return {
                    "worker": sum(cpu_seconds(worker.pid) for worker in workers),
                    "worker main": sum(own_cpu_seconds(worker.pid) for worker in workers),
                    "simulator": cpu_seconds(sim.process.pid),
                    "redis": cpu_seconds(redis_proc.pid),
                    "this process": sum(os.times()[:4]),
                    "machine busy": busy,
                    "machine total": total,
                }

            sweeper = threading.Thread(target=sweeping, daemon=True)
            sweeper.start()
            time.sleep(5)  # the worker's start-up and its children forking
            rss_cold = sum(sum(rss_each(worker.pid)) for worker in workers)
            application = Application.objects.filter(name=demo.APPLICATION).first() or (
                services.application_create(
                    actor="bench", source=Source.COMMAND, name=demo.APPLICATION, team="bench", namespace="pos"
                )
            )

            # --- warm-up: a small rollout, so that the memory figure is growth, not the cold start ---
            if args.warmup:
                warm_release = services.release_create(
                    actor="bench", source=Source.COMMAND, application=application, version="0.9.0",
                    templates=demo.TEMPLATES, values=demo.VALUES,
                )  # fmt: skip
                codes = sorted(Site.objects.values_list("code", flat=True))[: args.warmup]
                warm = services.rollout_start(
                    plan=services.rollout_plan_create(
                        actor="bench", source=Source.COMMAND, name="warm-up", release=warm_release,
                        target={"sites": codes}, waves=[{"percent": 100}], max_parallel=args.max_parallel,
                        failure_threshold={"percent": 100}, respect_windows=False,
                    ),
                    actor="bench", source=Source.COMMAND,
                )  # fmt: skip

                def warmed() -> bool:
                    warm.refresh_from_db()
                    return warm.state in (RolloutState.SUCCEEDED, RolloutState.HALTED)

                wait_for(warmed, args.timeout, "the warm-up rollout", every=0.2)
                time.sleep(1)
            steps_before, rows_before = executed_steps(), timeline_rows()
            runs_before = WorkflowRun.objects.filter(kind__startswith="rollout.").count()
            rss_before = sum(sum(rss_each(worker.pid)) for worker in workers)
            each_before = [mb for worker in workers for mb in rss_each(worker.pid)]

            # --- orchestrated ---
            release = services.release_create(
                actor="bench", source=Source.COMMAND, application=application, version="1.0.0",
                templates=demo.TEMPLATES, values=demo.VALUES,
            )  # fmt: skip
            plan = services.rollout_plan_create(
                actor="bench", source=Source.COMMAND, name="bench", release=release, target={"all": True}, waves=WAVES,
                max_parallel=args.max_parallel, failure_threshold={"percent": 100}, bake_seconds=0,
                respect_windows=False,
            )  # fmt: skip
            cpu_before = cpu_snapshot()
            started = time.perf_counter()
            rollout = services.rollout_start(plan=plan, actor="bench", source=Source.COMMAND)
            start_seconds = time.perf_counter() - started

            timeline: list[str] = []
            last_busy = machine_busy()
            last_sim = (cpu_seconds(sim.process.pid), time.perf_counter())
            queue_client = redis.Redis.from_url(redis_url)

            def finished() -> bool:
                nonlocal last_busy, last_sim
                rollout.refresh_from_db()
                if args.timeline:
                    busy = machine_busy()
                    share = (busy[0] - last_busy[0]) / max(busy[1] - last_busy[1], 1e-9) * 100
                    last_busy = busy
                    sim_now = (cpu_seconds(sim.process.pid), time.perf_counter())
                    sim_share = (sim_now[0] - last_sim[0]) / max(sim_now[1] - last_sim[1], 1e-9) * 100
                    last_sim = sim_now
                    queued = {q: queue_client.llen(q) for q in ("io", "control")}
                    in_flight = rollout.n_committing + rollout.n_syncing + rollout.n_verifying + rollout.n_unreachable
                    timeline.append(
                        f"{time.perf_counter() - started:7.2f} s  cpu {share:3.0f}%  simulator {sim_share:3.0f}%  "
                        f"wave {rollout.current_wave}  "
                        f"in flight {in_flight:4d}  "
                        f"done {rollout.n_succeeded + rollout.n_failed + rollout.n_skipped:5d}  "
                        f"queued io {queued['io']:3d} control {queued['control']:3d}"
                    )
                return rollout.state in (RolloutState.SUCCEEDED, RolloutState.HALTED)

            wait_for(finished, args.timeout, "the orchestrated rollout", every=0.5 if args.timeline else 0.2)
            orchestrated = time.perf_counter() - started
            cpu_orchestrated = cpu_delta(cpu_before, cpu_snapshot())
            time.sleep(2)
            rss_after = sum(sum(rss_each(worker.pid)) for worker in workers)
            each_after = [mb for worker in workers for mb in rss_each(worker.pid)]
            leaked = sum(git_processes(worker.pid) for worker in workers)
            counts = rollout.counts
            steps, step_rows = executed_steps() - steps_before, timeline_rows() - rows_before
            runs = WorkflowRun.objects.filter(kind__startswith="rollout.").count() - runs_before

            # --- plain: the same I/O (a new version, so every site gets a commit) ---
            v2 = services.release_create(
                actor="bench", source=Source.COMMAND, application=application, version="1.0.1",
                templates=demo.TEMPLATES, values=demo.VALUES,
            )  # fmt: skip
            by_code = {site.code: site for site in Site.objects.all()}
            order = [row[0] for row in Rollout.objects.get(pk=rollout.pk).site_rollouts.values_list("site__code")]
            waves: list[list[str]] = []
            sizes = [w.size for w in rollout.waves.order_by("index")]
            position = 0
            for size in sizes:
                waves.append(order[position : position + size])
                position += size
            jobs_by_wave = [
                [
                    {
                        "code": code,
                        "repo_url": by_code[code].repo_url,
                        "files": render_site_files(v2, by_code[code]),
                        "kubeconfig": str(sim.kubeconfig_path(code)),
                        "poll": args.sync_interval,
                        "cache_dir": str(tmp / "plain-cache"),
                    }
                    for code in wave
                ]
                for wave in waves
            ]
            threads = max(1, args.max_parallel // args.concurrency)
            cpu_before = cpu_snapshot()
            plain_started = time.perf_counter()
            with get_context("fork").Pool(args.concurrency, initializer=os.nice, initargs=(args.niceness,)) as pool:
                for jobs in jobs_by_wave:
                    chunks = [jobs[i :: args.concurrency] for i in range(args.concurrency)]
                    pool.starmap(plain_chunk, [(chunk, threads) for chunk in chunks if chunk])
            plain = time.perf_counter() - plain_started
            cpu_plain = cpu_delta(cpu_before, cpu_snapshot())
            plain_leaked = git_processes(os.getpid())
    finally:
        simulated.close()  # (already closed unless set-up failed before the run)
        stop.set()
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        if args.keep:
            print(f"bench: logs and state in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    if args.timeline:
        print("\n".join(["", "orchestrated timeline:", *timeline]))
    database = "PostgreSQL" if database_url.startswith("postgres") else "SQLite (WAL)"
    pool_shape = "prefork" if args.pool == "prefork" else f"worker threads pool of {args.threads} each"
    print(
        f"\nrollout of {args.sites} sites in 3 waves ({', '.join(str(s) for s in sizes)}), zero bake, "
        f"max_parallel {args.max_parallel}, agents polling every {args.sync_interval:g} s, "
        f"{args.concurrency} processes each side ({pool_shape}, niceness {args.niceness}), {database}, "
        f"{os.cpu_count()} CPUs, git over {args.git_transport}"
    )
    print(f"orchestrated final state: {rollout.state}, sites {dict((k, v) for k, v in counts.items() if v)}")
    print(
        f"  rollout_start (plan + render every site + rows): {start_seconds:.2f} s; {runs} runs, {steps} steps"
        f" in {step_rows} timeline rows"
    )
    print(f"{'':34}{'wall s':>9}{'ms/site':>10}")
    print(f"{'orchestrated (workflow engine)':34}{orchestrated:9.2f}{orchestrated / args.sites * 1000:10.1f}")
    print(f"{'plain script (same I/O)':34}{plain:9.2f}{plain / args.sites * 1000:10.1f}")
    print(f"ratio orchestrated / plain: {orchestrated / plain:.2f}x; "
          f"overhead per site: {(orchestrated - plain) / args.sites * 1000:.1f} ms")  # fmt: skip
    print(f"orchestrated {cpu_line(cpu_orchestrated)}")
    print(f"plain        {cpu_line(cpu_plain)}")
    shape = f"main + {args.concurrency} children" if args.pool == "prefork" else f"{args.concurrency} processes"
    print(f"worker RSS ({shape}): {rss_cold:.0f} MB started, {rss_before:.0f} MB after the warm-up rollout of "
          f"{args.warmup} sites, {rss_after:.0f} MB after the measured rollout")  # fmt: skip
    print(f"worker RSS ({shape}): {rss_before:.0f} MB before, {rss_after:.0f} MB after "
          f"(+{rss_after - rss_before:.0f} MB; per process "
          f"{', '.join(f'{a:.0f} -> {b:.0f}' for a, b in zip(each_before, each_after, strict=False))})")  # fmt: skip
    print(f"git processes left: {leaked} under the worker, {plain_leaked} under the plain script")


if __name__ == "__main__":
    main()
