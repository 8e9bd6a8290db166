"""Benchmark: the console's pages, the rollout list and page, and the REST API's lists and filters at two fleet
sizes: queries, and CPU time per page as a median and a 95th percentile, with their ratios.

    .venv/bin/python bench/pages.py [--small 300] [--large 3000] [--nodes-per-site 3.34] [--repeat 20]
    FLEET_DATABASE_URL=postgres://.../<throw-away db> .venv/bin/python bench/pages.py --database postgres

A fleet is generated (tests/console/fleet_data.py: sites in every health, nodes, alerts, runs and a
rollout over every site; here also three K3s versions over the clusters) in a throw-away SQLite file, or in
the PostgreSQL database FLEET_DATABASE_URL names with `--database postgres` (it is flushed: never point it
at data you keep). The pages are bench/page_list.py's. Each is fetched once to warm the caches a person's
second page finds warm, then `--repeat` times; printed are the queries of a fetch and the CPU time a fetch
cost: this process's (Django, the ORM, the templates; on SQLite the queries too) plus, on PostgreSQL, the
server process's serving this connection (its schedstat), median and 95th percentile (nearest rank) at each
size, and large/small as ratios. CPU time, not wall time: on a shared machine the wall clock measures the
neighbours. A page whose queries do not depend on the fleet's size has a query ratio of 1.00.
"""

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

Figures = tuple[int, float, float, float]  # queries, CPU ms median, CPU ms p95, database CPU ms p95


def p95(values: list[float]) -> float:
    """The 95th percentile by nearest rank: with 20 fetches the 19th fastest."""
    ordered = sorted(values)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


def server_cpu(backend: int | None) -> float:
    """CPU seconds the PostgreSQL server process `backend` (on this machine) has run so far; 0 without one."""
    if backend is None:
        return 0.0
    return int(Path(f"/proc/{backend}/schedstat").read_text().split()[0]) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=300)
    parser.add_argument("--large", type=int, default=3000)
    parser.add_argument("--nodes-per-site", type=float, default=10000 / 3000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--only", help="only the pages whose name contains this")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="edgefleet-bench-pages-"))
    sys.path.insert(0, str(ROOT))  # `tests` is the package, not a file of bench/
    from bench.measure import control_plane_env

    if args.database == "postgres":
        url = os.environ.get("FLEET_DATABASE_URL", "")
        if not url.startswith("postgres"):
            sys.exit("--database postgres needs FLEET_DATABASE_URL naming a throw-away PostgreSQL database")
    else:
        url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    control_plane_env(tmp, url)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from bench.page_list import PAGES

    pages = [(name, page) for name, page in PAGES if not args.only or args.only in name]
    call_command("migrate", verbosity=0)
    results = {sites: measure(sites, args, pages) for sites in (args.small, args.large)}
    report(connection.vendor, args, pages, results[args.small], results[args.large])


def measure(sites: int, args: argparse.Namespace, pages: list[tuple[str, str]]) -> dict[str, Figures]:
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Case, Value, When
    from django.db.models.functions import Mod
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from bench.page_list import resolve
    from sites.models import Cluster
    from tests.console.fleet_data import make_fleet

    call_command("flush", interactive=False, verbosity=0)
    nodes = int(sites * args.nodes_per_site)
    started = time.perf_counter()
    make_fleet(sites, nodes)
    # Three K3s versions (the target, one minor behind, two behind) for the version list and filter.
    Cluster.objects.update(
        k3s_version=Case(
            When(pk__in=Cluster.objects.annotate(m=Mod("id", 10)).filter(m=0).values("pk"), then=Value("v1.29.9+k3s1")),
            When(pk__in=Cluster.objects.annotate(m=Mod("id", 10)).filter(m=1).values("pk"), then=Value("v1.30.8+k3s1")),
            default=Value("v1.31.4+k3s1"),
        )
    )
    with connection.cursor() as cursor:
        # Statistics and the visibility map as autovacuum (PostgreSQL) or `PRAGMA optimize` (SQLite) would have
        # them by the time a person looks: without statistics SQLite reads `?health=` through the health index
        # and sorts every match for a page ordered by id.
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
    print(f"{sites} sites, {nodes} nodes generated in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    user = User.objects.create_superuser("bench", "bench@example.invalid", "bench-password-1")
    client = Client()
    client.force_login(user)
    addresses = resolve(client)
    backend = None
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
    figures: dict[str, Figures] = {}
    for name, _page in pages:
        address = addresses[name]
        response = client.get(address)
        if response.status_code != 200:
            sys.exit(f"{name}: {address} answered {response.status_code}")
        counts, cpu, database = [], [], []
        for _ in range(args.repeat):
            with CaptureQueriesContext(connection) as queries:
                begin, server = time.process_time(), server_cpu(backend)
                client.get(address)
                spent_server = server_cpu(backend) - server
                cpu.append(time.process_time() - begin + spent_server)
                database.append(spent_server)
            counts.append(len(queries.captured_queries))  # read now: the next request resets the log
        figures[name] = (max(counts), statistics.median(cpu) * 1000, p95(cpu) * 1000, p95(database) * 1000)
    return figures


def report(vendor: str, args: argparse.Namespace, pages: list[tuple[str, str]], small: dict, large: dict) -> None:
    print(
        f"\npages on {vendor}: {args.small} vs {args.large} sites ({args.nodes_per_site:.2f} nodes per site), "
        f"{args.repeat} fetches each"
    )
    print("queries per fetch; CPU ms per fetch (this process + the database server): median, p95 (nearest rank)")
    server = vendor == "postgresql"
    head = f"{'page':27} {'queries':>11} {'ratio':>5} {'CPU median':>13} {'ratio':>5} {'CPU p95':>13} {'ratio':>5}"
    print(head + (f" {'of it DB p95':>13}" if server else ""))
    for name, _page in pages:
        (q1, m1, p1, d1), (q2, m2, p2, d2) = small[name], large[name]
        line = (
            f"{name:27} {q1:>5} {q2:>5} {q2 / q1:>5.2f} {m1:>6.1f} {m2:>6.1f} {m2 / m1:>5.2f} "
            f"{p1:>6.1f} {p2:>6.1f} {p2 / p1:>5.2f}"
        )
        print(line + (f" {d1:>6.1f} {d2:>6.1f}" if server else ""))


if __name__ == "__main__":
    main()
