"""Benchmark: rendering a release per site in the renderer process against rendering in this process.

    .venv/bin/python bench/render.py [--sites 3000] [--rounds 5]

Renders the demo release (rollouts.demo: a ConfigMap and a Deployment) for `--sites` synthetic sites,
in rounds that alternate between the two ways:

- in process (the floor): rollouts.templating.TemplateSet.render_checked, compiled once, as edgefleet
  rendered before the renderer process existed;
- isolated: rollouts.isolation.render, as every render goes now: the site's facts to the renderer
  process and its files back over the pipes, the release compiled there once (by digest).

Printed: ms per site of each (median of the rounds), their ratio and the overhead per site, and what
starting a fresh renderer process costs (its first render, compiling included). A rollout's commit
step renders one site and then pushes to git (tens of ms), so the overhead per site is the figure
that matters; the benchmark rollout (bench/rollout.py) shows it in a whole rollout.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sites", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="edgefleet-bench-render-")
    sys.path.insert(0, str(ROOT))
    from bench.measure import control_plane_env

    control_plane_env(tmp, f"sqlite:///{tmp}/bench.sqlite3")
    import django

    django.setup()
    from rollouts import demo, isolation
    from rollouts.models import Application
    from rollouts.rendering import ReleaseRenderer
    from rollouts.templating import AppFacts, TemplateSet

    application = Application(name=demo.APPLICATION, team="bench", namespace="pos")
    facts = AppFacts(name=application.name, namespace="pos", namespaces=("pos",))
    sites = [
        {"code": f"TX-{n:04d}", "name": f"Site {n}", "region": f"r{n % 7}", "timezone": "UTC", "labels": {"n": str(n)}}
        for n in range(args.sites)
    ]

    started = time.perf_counter()
    renderer = ReleaseRenderer(application=application, version="1.0.0", templates=demo.TEMPLATES, values=demo.VALUES)
    renderer.render_checked(sites[0])
    cold = time.perf_counter() - started

    in_process, isolated = [], []
    for _ in range(args.rounds):
        started = time.perf_counter()
        templates = TemplateSet(application=facts, version="1.0.0", templates=demo.TEMPLATES, values=demo.VALUES)
        floor = [templates.render_checked(site) for site in sites]
        in_process.append((time.perf_counter() - started) / len(sites) * 1000)

        started = time.perf_counter()
        renderer = ReleaseRenderer(
            application=application, version="1.0.0", templates=demo.TEMPLATES, values=demo.VALUES
        )
        apart = [renderer.render_checked(site) for site in sites]
        isolated.append((time.perf_counter() - started) / len(sites) * 1000)
        assert [r.files for r in apart] == [r.files for r in floor]  # noqa: S101  # same output, or no figure

    a, b = statistics.median(in_process), statistics.median(isolated)
    print(f"demo release rendered for {args.sites} sites, {args.rounds} rounds, {os.cpu_count()} CPUs")
    print(f"{'':34}{'ms/site':>9}")
    print(f"{'in process (floor)':34}{a:9.3f}")
    print(f"{'renderer process (isolated)':34}{b:9.3f}")
    print(f"ratio isolated / in process: {b / a:.2f}x; overhead per site: {b - a:.3f} ms")
    print(f"a fresh renderer's first render (start-up and compiling): {cold * 1000:.0f} ms")
    isolation._POOL.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
