"""Benchmark: what the health probe costs per site, beside the probe it replaced, in the same run.

    .venv/bin/python bench/probe.py [--sites 300] [--rounds 3] [--dead-percent 10]

One simulator serves `--sites` sites, imported into a throwaway SQLite database (or FLEET_DATABASE_URL).
Each round probes every site twice, alternating site by site, in this one process (as one worker
process would, one site at a time):

- before: the previous probe, `SiteCluster.version()` and one UPDATE of the cluster row;
- after: `sites.services.site_probe`: version, one Node list (and the node Leases when a node is not
  Ready), each node's health and last seen, the site's health, the node-down alerts.

Then `--dead-percent` of the sites lose a machine (the simulator's `node_death`) and the rounds run
again: those sites cost the Lease list and the writes of a change. Printed per site: wall time (p50,
mean), HTTP requests and SQL queries, and what a probe round of 3000 sites costs one worker process.
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
    parser.add_argument("--sites", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dead-percent", type=float, default=10.0)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="edgefleet-bench-probe-"))
    sys.path.insert(0, str(ROOT))  # `simulator` is the package, not a file of bench/
    from simulator.testing import running_simulator

    os.environ.update(
        {
            "FLEET_ENV": "development",
            "FLEET_DEBUG": "false",
            "FLEET_DATA_DIR": str(tmp),
            "FLEET_DATABASE_URL": os.environ.get("FLEET_DATABASE_URL") or f"sqlite:///{tmp / 'bench.sqlite3'}",
            "DJANGO_SETTINGS_MODULE": "fleet.settings",
        }
    )
    import django

    django.setup()
    import urllib3
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from sites import services
    from sites.choices import ClusterReachability
    from sites.clusters import SiteCluster
    from sites.imports import fleet_import_file
    from sites.models import Cluster, Node, Site

    requests = [0]
    original = urllib3.connectionpool.HTTPConnectionPool.urlopen

    def counted(self: Any, *a: Any, **kw: Any) -> Any:
        requests[0] += 1
        return original(self, *a, **kw)

    urllib3.connectionpool.HTTPConnectionPool.urlopen = counted  # type: ignore[method-assign]

    def before(site: Site) -> None:
        """The probe as it was: /version, one UPDATE, the row read back."""
        cluster = Cluster.objects.select_related("site").get(site=site)
        version = SiteCluster.for_cluster(cluster).version()
        now = timezone.now()
        Cluster.objects.filter(pk=cluster.pk).update(
            reachability=ClusterReachability.REACHABLE, k3s_version=version, last_contact_at=now, last_probe_at=now
        )
        cluster.refresh_from_db()

    def after(site: Site) -> None:
        services.site_probe(site=site)

    def measure(sites: list[Site], rounds: int) -> dict[str, dict[str, list[float]]]:
        figures: dict[str, dict[str, list[float]]] = {
            name: {"ms": [], "http": [], "sql": []} for name in ("before", "after")
        }
        for _ in range(rounds):
            for site in sites:
                for name, probe in (("before", before), ("after", after)):
                    requests[0] = 0
                    connection.queries_log.clear()  # the log keeps 9000 entries; a capture counts within it
                    with CaptureQueriesContext(connection) as queries:
                        started = time.perf_counter()
                        probe(site)
                        elapsed = time.perf_counter() - started
                    figures[name]["ms"].append(elapsed * 1000)
                    figures[name]["http"].append(requests[0])
                    figures[name]["sql"].append(len(queries))
        return figures

    def report(title: str, figures: dict[str, dict[str, list[float]]]) -> None:
        print(f"\n{title}")
        print(f"{'':8} {'p50 ms':>8} {'mean ms':>8} {'HTTP/site':>10} {'SQL/site':>9} {'3000 sites':>11}")
        for name, values in figures.items():
            mean = statistics.fmean(values["ms"])
            print(
                f"{name:8} {statistics.median(values['ms']):8.2f} {mean:8.2f} {statistics.fmean(values['http']):10.2f}"
                f" {statistics.fmean(values['sql']):9.1f} {mean * 3000 / 1000:9.1f} s"
            )
        ratio = statistics.fmean(figures["after"]["ms"]) / statistics.fmean(figures["before"]["ms"])
        print(f"after / before: {ratio:.2f}x (mean wall time per site)")

    with running_simulator(sites=args.sites, state_dir=tmp / "sim", startup_timeout=600) as sim:
        call_command("migrate", verbosity=0)
        fleet_import_file(path=sim.state_dir / "fleet.json", actor="bench")
        sites = list(Site.objects.order_by("code"))
        print(
            f"sites: {len(sites)}, nodes: {Node.objects.count()}, rounds: {args.rounds}, database: {connection.vendor}"
        )
        for site in sites:  # warm: one client per site, TLS files written, first health written
            after(site)
        report("every node Ready", measure(sites, args.rounds))

        dead = sites[: max(1, int(len(sites) * args.dead_percent / 100))]
        for site in dead:
            victim = Node.objects.filter(site=site, role="agent").order_by("hostname").first()
            if victim is not None:
                sim.add_fault("node_death", site=site.code, node=victim.hostname)
        report(f"{len(dead)} sites ({args.dead_percent:g}%) with a dead machine", measure(sites, args.rounds))
        print(f"\nreproduce: .venv/bin/python bench/probe.py --sites {args.sites} --rounds {args.rounds}")


if __name__ == "__main__":
    main()
