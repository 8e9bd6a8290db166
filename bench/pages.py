"""Benchmark: the support console's pages at two fleet sizes, queries and time per page, and their ratio.

    .venv/bin/python bench/pages.py [--small 300] [--large 3000] [--nodes-per-site 3.34] [--repeat 5]
    FLEET_DATABASE_URL=postgres://.../<throw-away db> .venv/bin/python bench/pages.py --database postgres

A fleet is generated (tests/console/fleet_data.py: sites in every health, nodes, alerts, runs and a
rollout over every site) in a throw-away SQLite file, or in the PostgreSQL database FLEET_DATABASE_URL
names with `--database postgres` (it is flushed: never point it at data you keep). Each page is fetched
once to warm the caches a person's second page finds warm, then `--repeat` times; printed are the
queries of a fetch, the CPU time this process spent on it (rendering, ORM; on SQLite the queries too) and
the time the database took for its queries, medians at each size, and large/small as ratios. CPU time,
not wall time: on a shared machine the wall clock measures the neighbours. A page whose queries do not
depend on the fleet's size has a query ratio of 1.00.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PAGES = [
    ("dashboard", "/admin/"),
    ("dashboard fragment", "/admin/console/live/"),
    ("search (several)", "/admin/console/search/?q=Lyon"),
    ("site list", "/admin/sites/site/"),
    ("site list, unreachable", "/admin/sites/site/?health__exact=unreachable"),
    ("node list", "/admin/sites/node/"),
    ("node list, not seen", "/admin/sites/node/?health__exact=not_seen"),
    ("alert list", "/admin/sites/alert/"),
    ("cluster list", "/admin/sites/cluster/"),
    ("site page", "site"),
    ("site page fragment", "site-live"),
    ("node page", "node"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=300)
    parser.add_argument("--large", type=int, default=3000)
    parser.add_argument("--nodes-per-site", type=float, default=10000 / 3000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
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
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from sites.models import Node, Site
    from tests.console.fleet_data import make_fleet

    call_command("migrate", verbosity=0)
    results: dict[int, dict[str, tuple[int, float, float]]] = {}
    for sites in (args.small, args.large):
        call_command("flush", interactive=False, verbosity=0)
        nodes = int(sites * args.nodes_per_site)
        started = time.perf_counter()
        make_fleet(sites, nodes)
        print(f"{sites} sites, {nodes} nodes generated in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        user = User.objects.create_superuser("bench", "bench@example.invalid", "bench-password-1")
        client = Client()
        client.force_login(user)
        site = Site.objects.get(code="GN-00001")
        node = Node.objects.filter(site=site).order_by("pk").first()
        assert node is not None
        targets = {
            "site": f"/admin/sites/site/{site.pk}/change/",
            "site-live": f"/admin/sites/site/{site.pk}/live/",
            "node": f"/admin/sites/node/{node.pk}/change/",
        }
        results[sites] = {}
        for name, page in PAGES:
            url_of_page = targets.get(page, page)
            response = client.get(url_of_page)
            if response.status_code != 200:
                sys.exit(f"{name}: {url_of_page} answered {response.status_code}")
            counts, cpu, sql = [], [], []
            for _ in range(args.repeat):
                with CaptureQueriesContext(connection) as queries:
                    begin = time.process_time()
                    client.get(url_of_page)
                    cpu.append(time.process_time() - begin)
                # Read now: the next request resets the connection's log.
                counts.append(len(queries.captured_queries))
                sql.append(sum(float(q["time"]) for q in queries.captured_queries))
            results[sites][name] = (max(counts), statistics.median(cpu) * 1000, statistics.median(sql) * 1000)

    small, large = results[args.small], results[args.large]
    vendor = connection.vendor
    print(f"\nconsole pages on {vendor}: {args.small} vs {args.large} sites ({args.nodes_per_site:.2f} nodes per site)")
    print("queries per page; CPU ms of this process per page (median); ms the database took (median)")
    print(f"{'page':24} {'queries':>15} {'ratio':>6} {'CPU ms':>15} {'ratio':>6} {'SQL ms':>15} {'ratio':>6}")
    for name, _page in PAGES:
        (q1, c1, s1), (q2, c2, s2) = small[name], large[name]
        sql_ratio = f"{s2 / s1:>6.2f}" if min(s1, s2) >= 1.0 else f"{'-':>6}"  # below the clock's resolution
        print(
            f"{name:24} {q1:>7} {q2:>7} {q2 / q1:>6.2f} {c1:>7.1f} {c2:>7.1f} {c2 / c1:>6.2f} "
            f"{s1:>7.1f} {s2:>7.1f} {sql_ratio}"
        )


if __name__ == "__main__":
    main()
