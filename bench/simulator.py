"""Benchmark of the fleet simulator at fleet scale, against the framework's floor measured in the same run.

Starts `python -m simulator` with N sites (default 3000) and reports its start-up time, resident memory and
idle CPU, then times GET (read a node), LIST (pods of kube-system) and PATCH (label a node) with the official
`kubernetes` client on a sample of sites. The same calls go, interleaved, to a bare aiohttp server (its own
process, same TLS certificate) whose handler only returns a fixed body captured from the simulator: the
floor that aiohttp, TLS and the client's own decoding cost. Ratios (simulator / floor) are what to compare
across machines. Everything talks to 127.0.0.1 only and the run is bounded (about two minutes at 3000 sites).

    .venv/bin/python bench/simulator.py [--sites 3000] [--requests 300] [--clients 40]
"""

import argparse
import asyncio
import copy
import json
import os
import random
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator.testing import running_simulator  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CHUNK = 25


def _proc_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _raw(response: Any) -> bytes:
    """The body of a `_preload_content=False` call (typed as the model, it is the urllib3 response)."""
    return bytes(response.data)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# --- the floor: a bare aiohttp handler returning a fixed body --------------------------------------------


def serve_floor(args: argparse.Namespace) -> None:
    from aiohttp import web

    node = Path(args.node_body).read_bytes()
    pods = Path(args.pods_body).read_bytes()

    async def handler(request: web.Request) -> web.Response:
        await request.read()  # a real handler reads the request; so does this one
        body = pods if request.path.endswith("/pods") else node
        return web.Response(body=body, content_type="application/json")

    async def run() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        Path(args.port_file).write_text(str(runner.addresses[0][1]))
        await asyncio.Event().wait()

    asyncio.run(run())


# --- the measurement ------------------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from kubernetes import client

    results: dict[str, Any] = {"sites": args.sites, "sync_interval": args.sync_interval}
    with tempfile.TemporaryDirectory(prefix="simbench-") as tmp:
        state = Path(tmp) / "sim"
        started = time.monotonic()
        with running_simulator(
            sites=args.sites,
            state_dir=state,
            seed=1,
            sync_interval=args.sync_interval,
            startup_timeout=max(300.0, args.sites * 0.05),  # 30000 sites take minutes on a busy machine
        ) as sim:
            results["startup_s"] = time.monotonic() - started
            pid = sim.process.pid
            results["rss_after_start"] = _proc_status(pid, "VmRSS")
            time.sleep(5)  # let the first poll of every repository and lease renewal pass
            cpu = _cpu_seconds(pid)
            time.sleep(args.idle_seconds)
            results["idle_cpu_percent"] = 100 * (_cpu_seconds(pid) - cpu) / args.idle_seconds

            codes = random.Random(2).sample(sim.codes, min(args.clients, len(sim.codes)))
            targets = [(sim.api_client(code), sim.site(code)["nodes"][0]["hostname"]) for code in codes]
            node_body = Path(tmp) / "node.json"
            pods_body = Path(tmp) / "pods.json"
            core0 = client.CoreV1Api(targets[0][0])
            node_body.write_bytes(_raw(core0.read_node(targets[0][1], _preload_content=False)))
            pods_body.write_bytes(_raw(core0.list_namespaced_pod("kube-system", _preload_content=False)))
            port_file = Path(tmp) / "floor.port"
            floor = subprocess.Popen(  # noqa: S603
                [
                    sys.executable,
                    __file__,
                    "--floor",
                    "--node-body",
                    str(node_body),
                    "--pods-body",
                    str(pods_body),
                    "--cert",
                    str(state / "tls" / "server.crt"),
                    "--key",
                    str(state / "tls" / "server.key"),
                    "--port-file",
                    str(port_file),
                ],
            )
            try:
                deadline = time.monotonic() + 30
                while not port_file.exists() or not port_file.read_text():
                    if time.monotonic() > deadline or floor.poll() is not None:
                        raise RuntimeError("the floor server did not start")
                    time.sleep(0.05)
                floor_port = port_file.read_text().strip()
                sim_port = sim.base_url.rsplit(":", 1)[1]
                floor_targets = []
                for api, node in targets:
                    config = copy.deepcopy(api.configuration)
                    config.host = config.host.replace(f":{sim_port}/", f":{floor_port}/")
                    floor_targets.append((client.ApiClient(config), node))
                results["ops"] = _time_operations(targets, floor_targets, args.requests)
            finally:
                floor.terminate()
                floor.wait(10)
            results["rss_end"] = _proc_status(pid, "VmRSS")
            results["rss_peak"] = _proc_status(pid, "VmHWM")
    return results


def _time_operations(targets: list[Any], floor_targets: list[Any], requests: int) -> dict[str, Any]:
    from kubernetes import client

    def get(api: Any, node: str, i: int) -> None:
        client.CoreV1Api(api).read_node(node)

    def list_pods(api: Any, node: str, i: int) -> None:
        client.CoreV1Api(api).list_namespaced_pod("kube-system")

    def patch(api: Any, node: str, i: int) -> None:
        client.CoreV1Api(api).patch_node(node, {"metadata": {"labels": {"bench": str(i)}}})

    found: dict[str, Any] = {}
    rng = random.Random(3)
    for name, op in (("GET node", get), ("LIST pods", list_pods), ("PATCH node", patch)):
        for pairs in (targets, floor_targets):  # warm up: connections, TLS sessions, client caches
            for api, node in pairs:
                op(api, node, 0)
        timings: dict[str, list[float]] = {"sim": [], "floor": []}
        # Alternate short blocks, so both sides see the same machine (other load, CPU frequency) over the run,
        # while the work the simulator does after answering (controllers reacting to a PATCH) delays its own
        # next request rather than the floor's.
        for start in range(0, requests, CHUNK):
            picks = [rng.randrange(len(targets)) for _ in range(min(CHUNK, requests - start))]
            for side, pairs in (("sim", targets), ("floor", floor_targets)):
                for offset, index in enumerate(picks):
                    api, node = pairs[index]
                    t0 = time.perf_counter()
                    op(api, node, start + offset)
                    timings[side].append((time.perf_counter() - t0) * 1000)
        found[name] = {
            side: {"p50": statistics.median(values), "p99": _percentile(values, 0.99)}
            for side, values in timings.items()
        }
    return found


def report(results: dict[str, Any]) -> str:
    lines = [
        f"sites: {results['sites']}",
        f"start-up: {results['startup_s']:.1f} s (process start to healthy)",
        f"resident memory: {results['rss_after_start'] / 2**20:.0f} MiB after start-up, "
        f"{results['rss_end'] / 2**20:.0f} MiB at the end, peak {results['rss_peak'] / 2**20:.0f} MiB",
        f"idle CPU: {results['idle_cpu_percent']:.1f} % of one core (git polled every {results['sync_interval']:g} s, "
        "node leases renewed every 10 s)",
        "",
        f"{'operation':<12} {'sim p50':>9} {'floor p50':>10} {'ratio':>6} "
        f"{'sim p99':>9} {'floor p99':>10} {'ratio':>6}",
    ]
    for name, sides in results["ops"].items():
        sim, floor = sides["sim"], sides["floor"]
        lines.append(
            f"{name:<12} {sim['p50']:>7.2f}ms {floor['p50']:>8.2f}ms {sim['p50'] / floor['p50']:>5.2f}x "
            f"{sim['p99']:>7.2f}ms {floor['p99']:>8.2f}ms {sim['p99'] / floor['p99']:>5.2f}x"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=3000)
    parser.add_argument("--requests", type=int, default=300, help="timed requests per operation and side")
    parser.add_argument("--clients", type=int, default=40, help="sites sampled (one API client each)")
    parser.add_argument("--sync-interval", type=float, default=5.0, help="GitOps poll interval (the default)")
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="how long idle CPU is measured")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--node-body", help=argparse.SUPPRESS)
    parser.add_argument("--pods-body", help=argparse.SUPPRESS)
    parser.add_argument("--cert", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor:
        serve_floor(args)
        return 0
    results = measure(args)
    print(report(results))  # noqa: T201
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
