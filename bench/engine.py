"""Benchmark: the workflow engine's cost per step against raw Celery tasks, on the same workers and Redis.

    .venv/bin/python bench/engine.py [--runs 1000] [--concurrency 2] [--timeout 600]

- raw Celery: `--runs` chains of 5 no-op tasks (`celery.accumulate`, immutable signatures), so each task's
  worker sends the next one, as the engine's Done does: 5 x runs messages;
- engine: `--runs` runs of the built-in `noop` workflow (5 steps that return Done): the same number of
  messages, plus the lease, the recorded outcome and the StepRun row of every step.

It starts its own worker (`celery -A fleet worker`, prefork) against a throwaway database (a SQLite file
in a temporary directory, or FLEET_DATABASE_URL if set: its bench runs are deleted afterwards) and Redis
database 14 (FLEET_BENCH_REDIS_URL to change it; a private redis-server when none answers on 6379).
Completion of raw tasks is counted from the worker's task events, of runs from the database.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the worktree's packages

from bench.measure import start_redis, tcp_open, wait_for  # noqa: E402
from fleet.audit.choices import Source  # noqa: E402  (after the path: this tree's fleet, not an installed one)

STEPS = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (prefork)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per phase")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (worker log)")
    parser.add_argument(
        "--db-reuse",
        type=int,
        default=0,
        help="set Celery's CELERY_DB_REUSE_MAX in the worker: without it, Celery's Django fixup closes the "
        "database connection around every task (PostgreSQL then reconnects for each one)",
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="edgefleet-bench-"))
    redis_proc = None
    redis_url = os.environ.get("FLEET_BENCH_REDIS_URL")
    if not redis_url:
        if tcp_open(6379):
            redis_url = "redis://127.0.0.1:6379/14"
        else:
            redis_proc, redis_url = start_redis(tmp)
    database_url = os.environ.get("FLEET_DATABASE_URL") or f"sqlite:///{tmp / 'bench.sqlite3'}"
    os.environ.update(
        {
            "FLEET_ENV": "development",
            "FLEET_DEBUG": "false",  # DEBUG keeps every query in memory: not what production runs
            "FLEET_DATA_DIR": str(tmp),
            "FLEET_DATABASE_URL": database_url,
            "FLEET_REDIS_URL": redis_url,
            "FLEET_BROKER_URL": redis_url,
            "DJANGO_SETTINGS_MODULE": "fleet.settings",
        }
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import redis
    from celery import chain
    from django.core.management import call_command

    from fleet.celery import app
    from fleet.workflows.choices import RunState
    from fleet.workflows.models import WorkflowRun
    from fleet.workflows.services import workflow_start

    call_command("migrate", verbosity=0)
    redis.Redis.from_url(redis_url).flushdb()

    log_path = tmp / "worker.log"
    worker_args = ["worker", "-Q", "control,io", "-c", str(args.concurrency), "-P", "prefork", "--without-gossip",
                   "--without-mingle", "-l", "INFO", "-n", f"bench-{os.getpid()}@%h"]  # fmt: skip
    launcher = (
        "import sys; from fleet.celery import app; app.conf.CELERY_DB_REUSE_MAX = int(sys.argv[1]); "
        "app.worker_main(sys.argv[2:])"
    )
    command = (
        [sys.executable, "-c", launcher, str(args.db_reuse), *worker_args]
        if args.db_reuse
        else [sys.executable, "-m", "celery", "-A", "fleet", *worker_args]
    )
    worker = subprocess.Popen(
        command, cwd=ROOT, env=os.environ.copy(), stdout=log_path.open("ab"), stderr=subprocess.STDOUT
    )

    succeeded = 0
    lock = threading.Lock()

    def count(event: dict[str, object]) -> None:
        nonlocal succeeded
        with lock:
            succeeded += 1

    receiver_ready = threading.Event()

    def listen() -> None:
        with app.connection() as conn:
            receiver = app.events.Receiver(conn, handlers={"task-succeeded": count})
            receiver_ready.set()
            receiver.capture(limit=None, timeout=None, wakeup=False)

    threading.Thread(target=listen, daemon=True).start()
    receiver_ready.wait(10)

    def raw(n: int) -> float:
        nonlocal succeeded
        with lock:
            succeeded = 0
        started = time.perf_counter()
        for _ in range(n):
            chain(*[app.signature("celery.accumulate", immutable=True) for _ in range(STEPS)]).apply_async()
        wait_for(lambda: succeeded >= n * STEPS, args.timeout, f"{n * STEPS} raw tasks", every=0.05)
        return time.perf_counter() - started

    def engine(n: int) -> float:
        started = time.perf_counter()
        runs = [workflow_start(kind="noop", subject=None, actor="bench", source=Source.COMMAND).pk for _ in range(n)]
        done = WorkflowRun.objects.filter(pk__in=runs, state=RunState.SUCCEEDED)
        wait_for(lambda: done.count() == n, args.timeout, f"{n} workflow runs", every=0.05)
        return time.perf_counter() - started

    try:
        wait_for(lambda: b" ready." in log_path.read_bytes(), 60, "the worker", every=0.05)
        raw(20)  # warm-up: connections, imports, forked children
        engine(20)
        raw_seconds = raw(args.runs)
        engine_seconds = engine(args.runs)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        if os.environ.get("FLEET_DATABASE_URL", "").startswith("postgres"):
            WorkflowRun.objects.filter(kind="noop", created_by_repr="bench").delete()
        if redis_proc is not None:
            redis_proc.terminate()
        if args.keep:
            print(f"bench: worker log in {log_path}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    messages = args.runs * STEPS
    raw_step = raw_seconds / messages * 1000
    engine_step = engine_seconds / messages * 1000
    database = "PostgreSQL" if database_url.startswith("postgres") else "SQLite (WAL)"
    if args.db_reuse:
        database += f", CELERY_DB_REUSE_MAX={args.db_reuse}"
    print(f"\nworkflow engine vs raw Celery: {args.runs} x {STEPS} steps, 1 worker x {args.concurrency} processes, "
          f"{database}, Redis {redis_url.rsplit('/', 1)[-1] if redis_proc is None else 'private'}")  # fmt: skip
    print(f"{'':28}{'wall s':>9}{'messages':>10}{'per step ms':>13}{'steps/s':>9}")
    for name, seconds, per_step in (
        ("raw Celery (chains)", raw_seconds, raw_step),
        ("engine (noop workflow)", engine_seconds, engine_step),
    ):
        print(f"{name:28}{seconds:9.2f}{messages:10d}{per_step:13.2f}{messages / seconds:9.0f}")
    ratio = engine_step / raw_step
    verdict = "meets" if ratio <= 2 else "misses"
    print(f"engine / raw per step: {ratio:.2f}x ({verdict} the <= 2x target)")


if __name__ == "__main__":
    main()
