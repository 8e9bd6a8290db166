"""Benchmark: the rollout page and its live fragment at 300 and at 3000 sites, queries and time, as a ratio.

    .venv/bin/python bench/rollout_page.py [--sizes 300 3000] [--repeat 5] [--database sqlite|postgres]
                                           [--postgres-url postgres://postgres@127.0.0.1:5432/postgres]

For each size, a rollout of that many new sites caught mid-way (tests.rollouts.factories.fleet_rollout:
first wave done with failures, second in flight with unreachable sites, third pending) is built with bulk
inserts; then the admin's rollout page (`/admin/rollouts/rollout/<id>/change/`) and the fragment its
JavaScript polls (`.../live/`) are fetched `--repeat` times each through Django's test client as a
superuser, after one warm-up fetch. Printed per page and size: SQL queries and the median wall time;
then 3000 against 300 as a ratio (queries must not grow; time should barely).

`--database sqlite` (the default) uses a throwaway file; `--database postgres` creates a throwaway
database on the server of `--postgres-url` (or FLEET_DATABASE_URL) and drops it afterwards.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 3000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("FLEET_DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    )
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from bench.measure import control_plane_env, fresh_postgres

    tmp = Path(tempfile.mkdtemp(prefix="edgefleet-bench-page-"))
    pg_name = f"edgefleet_bench_page_{os.getpid()}"
    url = (
        fresh_postgres(pg_name, args.postgres_url)
        if args.database == "postgres"
        else f"sqlite:///{tmp / 'bench.sqlite3'}"
    )
    control_plane_env(tmp, url)
    try:
        run(args)
    finally:
        if args.database == "postgres":
            from django.db import connections

            connections.close_all()
            fresh_postgres(pg_name, args.postgres_url, create=False)


def run(args: Any) -> None:
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from tests.rollouts.factories import fleet_rollout

    call_command("migrate", verbosity=0)
    user = User.objects.create_superuser("bench", password="bench-password-1")  # noqa: S106 (throwaway database)
    client = Client()
    client.force_login(user)
    results: dict[int, dict[str, tuple[int, float]]] = {}
    print(f"database: {connection.vendor}; {args.repeat} fetches per page after one warm-up")
    for n, size in enumerate(args.sizes):
        rollout = fleet_rollout(size, prefix=f"B{n}")
        results[size] = {}
        for page, path in (
            ("page", f"/admin/rollouts/rollout/{rollout.pk}/change/"),
            ("live fragment", f"/admin/rollouts/rollout/{rollout.pk}/live/"),
        ):
            assert client.get(path).status_code == 200, path  # noqa: S101 (a bench, not a check)
            times, queries = [], 0
            for _ in range(args.repeat):
                with CaptureQueriesContext(connection) as captured:
                    started = time.perf_counter()
                    response = client.get(path)
                    times.append(time.perf_counter() - started)
                queries = len(captured)
                assert response.status_code == 200  # noqa: S101
            results[size][page] = (queries, statistics.median(times))
            print(f"{size:6d} sites  {page:14s} {queries:3d} queries  {1000 * statistics.median(times):8.1f} ms")
    small, large = min(args.sizes), max(args.sizes)
    if small != large:
        for page in ("page", "live fragment"):
            (q1, t1), (q2, t2) = results[small][page], results[large][page]
            print(f"{page:14s} {large} vs {small} sites: queries x{q2 / q1:.2f}, time x{t2 / t1:.2f}")


if __name__ == "__main__":
    main()
