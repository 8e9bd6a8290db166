"""Benchmark: the support console's pages at two fleet sizes, queries and time per page, and their ratio.

    .venv/bin/python bench/pages.py [--small 300] [--large 3000] [--nodes-per-site 3.34] [--repeat 5]
    FLEET_DATABASE_URL=postgres://.../<throw-away db> .venv/bin/python bench/pages.py --database postgres

A fleet is generated (tests/console/fleet_data.py: sites in every health, nodes, alerts, runs and a
rollout over every site) in a throw-away SQLite file, or in the PostgreSQL database FLEET_DATABASE_URL
names with `--database postgres` (it is flushed: never point it at data you keep). Each page is fetched
once to warm the caches a person's second page finds warm, then `--repeat` times; printed are the
queries of one fetch and the median time at each size, and large/small as a ratio. A page whose queries
do not depend on the fleet's size has a query ratio of 1.00.
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
    if args.database == "postgres":
        url = os.environ.get("FLEET_DATABASE_URL", "")
        if not url.startswith("postgres"):
            sys.exit("--database postgres needs FLEET_DATABASE_URL naming a throw-away PostgreSQL database")
    else:
        url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    os.environ.update(
        {
            "FLEET_ENV": "development",
            "FLEET_DEBUG": "false",
            "FLEET_DATA_DIR": str(tmp),
            "FLEET_DATABASE_URL": url,
            "DJANGO_SETTINGS_MODULE": "fleet.settings",
        }
    )
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
    results: dict[int, dict[str, tuple[int, float]]] = {}
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
            with CaptureQueriesContext(connection) as queries:
                client.get(url_of_page)
            count = len(queries.captured_queries)  # now: the next request resets the connection's log
            times = []
            for _ in range(args.repeat):
                begin = time.perf_counter()
                client.get(url_of_page)
                times.append(time.perf_counter() - begin)
            results[sites][name] = (count, statistics.median(times) * 1000)

    small, large = results[args.small], results[args.large]
    vendor = connection.vendor
    print(f"\nconsole pages on {vendor}: {args.small} vs {args.large} sites ({args.nodes_per_site:.2f} nodes per site)")
    print(f"{'page':26} {'queries':>9} {'':>6} {'ratio':>6}   {'ms':>8} {'':>8} {'ratio':>6}")
    print(f"{'':26} {args.small:>9} {args.large:>6} {'':>6}   {args.small:>8} {args.large:>8}")
    for name, _page in PAGES:
        (q1, t1), (q2, t2) = small[name], large[name]
        print(f"{name:26} {q1:>9} {q2:>6} {q2 / q1:>6.2f}   {t1:>8.1f} {t2:>8.1f} {t2 / t1:>6.2f}")


if __name__ == "__main__":
    main()
