"""Command line: `python -m simulator --sites N --port P --state-dir DIR [--control-plane URL] [--seed S]
[--sync-interval SECONDS] [--host H] [--fault kind:rate[:seconds][@site] ...]`.

`--port 0` picks a free port; the port actually used is printed and written to DIR/simulator.json.
SIGTERM or SIGINT stops the simulator cleanly.
"""

import argparse
import asyncio
import gc
import logging
import signal
import sys
from pathlib import Path

from aiohttp import web

from simulator.faults import FaultError, parse_cli_fault
from simulator.fleet import Config, Fleet
from simulator.fleetgen import K3S_VERSION
from simulator.githost.paths import path_problem
from simulator.server import build_app
from simulator.tls import server_context

log = logging.getLogger("simulator")


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m simulator", description="Serve many virtual K3s locations (see docs/SIMULATOR.md)."
    )
    parser.add_argument("--sites", type=int, default=3, help="number of virtual sites (default 3)")
    parser.add_argument("--port", type=int, default=8700, help="TCP port; 0 picks a free one (default 8700)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--state-dir", type=Path, required=True, help="fleet.json, kubeconfigs, repos, admin-token")
    parser.add_argument("--control-plane", help="base URL of edgefleet, for device registration and heartbeats")
    parser.add_argument("--seed", type=int, default=0, help="fleet generation seed (same seed, same fleet)")
    parser.add_argument("--sync-interval", type=_positive, default=5.0, help="GitOps poll interval in seconds")
    parser.add_argument("--heartbeat-interval", type=_positive, default=5.0, help="device heartbeat interval")
    parser.add_argument("--lease-interval", type=_positive, default=10.0, help="node lease renewal interval")
    parser.add_argument("--pod-start-seconds", type=float, default=0.5, help="time a scheduled pod takes to run")
    parser.add_argument(
        "--k3s-version", default=K3S_VERSION, help="the K3s version the machines run at start (e.g. v1.30.8+k3s1)"
    )
    parser.add_argument("--job-seconds", type=float, default=1.0, help="time a Job pod runs before it completes")
    parser.add_argument("--reboot-seconds", type=float, default=3.0, help="wiped device off-time before it boots")
    parser.add_argument("--node-gone-seconds", type=float, default=1.0, help="wiped Node NotReady before removal")
    parser.add_argument("--retry-seconds", type=_positive, default=3.0, help="device retry after a failed call")
    parser.add_argument("--refused-retry-seconds", type=_positive, default=30.0, help="retry after a 403 refusal")
    parser.add_argument("--bookmark-seconds", type=_positive, default=5.0, help="watch bookmark interval")
    parser.add_argument(
        "--sync-latency",
        type=float,
        default=0.0,
        help="mean of an exponential delay before each sync applies (a fleet-wide sync_delay)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND:RATE[:SECONDS][@SITE]",
        help="a fault active from the start, e.g. api_error:0.05 (repeatable)",
    )
    parser.add_argument(
        "--no-tls", action="store_true", help="serve plain HTTP (kubectl then sends no token: only for clients that do)"
    )
    parser.add_argument(
        "--git-group",
        default="fleet",
        help="the git host's group (path, e.g. acme/restaurants) whose projects are the sites' repositories",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.sites < 1:
        parser.error("--sites must be at least 1")
    for part in args.git_group.strip("/").split("/"):
        problem = path_problem(part)
        if problem:
            parser.error(f"--git-group {args.git_group!r}: {part!r} {problem}")
    faults = []
    for text in args.fault:
        try:
            spec = parse_cli_fault(text)
        except FaultError as exc:
            parser.error(str(exc))
        if spec["kind"] == "node_death":
            spec["node"], spec["site"] = spec.pop("site"), None
        faults.append(spec)
    if args.sync_latency > 0:
        faults.append({"kind": "sync_delay", "site": None, "rate": 1.0, "seconds": args.sync_latency})
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return Config(
        sites=args.sites,
        state_dir=args.state_dir,
        seed=args.seed,
        host=args.host,
        port=args.port,
        control_plane=args.control_plane,
        sync_interval=args.sync_interval,
        heartbeat_seconds=args.heartbeat_interval,
        lease_seconds=args.lease_interval,
        pod_start_seconds=args.pod_start_seconds,
        job_seconds=args.job_seconds,
        k3s_version=args.k3s_version,
        reboot_seconds=args.reboot_seconds,
        node_gone_seconds=args.node_gone_seconds,
        retry_seconds=args.retry_seconds,
        refused_retry_seconds=args.refused_retry_seconds,
        bookmark_seconds=args.bookmark_seconds,
        faults=faults,
        tls=not args.no_tls,
        git_group=args.git_group,
    )


async def serve(config: Config) -> None:
    fleet = Fleet(config)
    try:
        fleet.prepare()
    except FaultError as exc:
        raise SystemExit(f"invalid --fault: {exc}") from exc
    # The fleet's objects live as long as the process: keep the cyclic GC from rescanning them all
    # (at 3000 sites a full collection walks millions of objects and shows up as idle CPU).
    gc.collect()
    gc.freeze()
    runner = web.AppRunner(build_app(fleet), access_log=None, shutdown_timeout=2.0, handler_cancellation=True)
    await runner.setup()
    context = server_context(fleet.cert_path, fleet.key_path) if fleet.cert_path and fleet.key_path else None
    tcp = web.TCPSite(runner, config.host, config.port, backlog=1024, ssl_context=context)
    await tcp.start()
    port = runner.addresses[0][1]
    fleet.write_state(config.host, port)
    await fleet.start()
    print(
        f"simulator: {len(fleet.sites)} sites on {fleet.base_url} "  # noqa: T201
        f"(state in {config.state_dir}, started in {fleet.startup_seconds:.1f}s)",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    await fleet.stop()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        asyncio.run(serve(config))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
