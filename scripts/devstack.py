"""`make dev`: the whole edgefleet stack on one machine, in the foreground; Ctrl-C stops everything.

Migrates, makes sure an admin user exists (credentials printed), starts a simulated fleet (40 sites),
imports it, probes it at once and onboards every site (its base stack committed through the local git
host), and runs web (:8000), a Celery worker, Celery beat, Flower (:5555), the simulator (:8700) and,
when no Redis answers at FLEET_REDIS_URL, a private redis-server.

A living fleet: a demo rollout slow enough to watch (a minute's bake between waves, two sites at a time),
one site offline and one failing (simulator faults injected once they are onboarded: dev_faults).

    scripts/devstack.py [--sites 40] [--no-demo] [--no-offline-site] [--no-failing-site] [--bake 60]
                        [--max-parallel 2]

The same as environment variables: FLEET_DEV_SITES, FLEET_DEV_DEMO=0, FLEET_DEV_OFFLINE_SITE=0,
FLEET_DEV_FAILING_SITE=0; ports: FLEET_WEB_PORT, FLEET_SIM_PORT, FLEET_FLOWER_PORT.
"""

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

from honcho.manager import Manager

from simulator.harness import tcp_open

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
WEB_PORT = int(os.environ.get("FLEET_WEB_PORT", "8000"))
SIM_PORT = int(os.environ.get("FLEET_SIM_PORT", "8700"))
SIM_SITES = int(os.environ.get("FLEET_DEV_SITES", "40"))
FLOWER_PORT = int(os.environ.get("FLEET_FLOWER_PORT", "5555"))
PRIVATE_REDIS_PORT = int(os.environ.get("FLEET_DEV_REDIS_PORT", "6390"))


def supervised(name: str, command: str) -> str:
    """`command` restarted whenever it exits (fleet/supervise.py): honcho stops the whole stack when one
    of its processes exits, so a crashed worker would otherwise take the web and the simulator with it."""
    return f"{PY} -m fleet.supervise --name {name} -- {command}"


def run(*args: str, env: dict[str, str]) -> None:
    subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=env, check=True)  # noqa: S603 - our own manage.py


def on(name: str) -> bool:
    return os.environ.get(name, "1") != "0"


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="the whole edgefleet stack on one machine (make dev)")
    parser.add_argument("--sites", type=int, default=SIM_SITES, help="simulated sites (default 40)")
    parser.add_argument("--no-demo", dest="demo", action="store_false", default=on("FLEET_DEV_DEMO"))
    parser.add_argument("--no-offline-site", dest="offline", action="store_false", default=on("FLEET_DEV_OFFLINE_SITE"))
    parser.add_argument("--no-failing-site", dest="failing", action="store_false", default=on("FLEET_DEV_FAILING_SITE"))
    parser.add_argument("--bake", type=int, default=60, help="demo rollout: seconds between waves (default 60)")
    parser.add_argument("--max-parallel", type=int, default=2, help="demo rollout: sites at once (default 2)")
    return parser.parse_args()


def main() -> int:
    args = options()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    data_dir = Path(env.setdefault("FLEET_DATA_DIR", str(ROOT / "var")))
    data_dir.mkdir(parents=True, exist_ok=True)
    for port, what in ((WEB_PORT, "web"), (SIM_PORT, "sim"), (FLOWER_PORT, "Flower")):
        if tcp_open("127.0.0.1", port):
            print(f"port {port} ({what}) is in use: stop what holds it, or set FLEET_{what.upper()}_PORT")
            return 1

    manager = Manager()
    redis_url = env.setdefault("FLEET_REDIS_URL", "redis://127.0.0.1:6379/0")
    parsed = urlparse(redis_url)
    if not tcp_open(parsed.hostname or "127.0.0.1", parsed.port or 6379):
        binary = shutil.which("redis-server")
        if binary is None:
            print(
                f"No Redis answers at {redis_url} and no redis-server is on PATH.\n"
                "Install one (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) "
                "or point FLEET_REDIS_URL at a running Redis."
            )
            return 1
        redis_dir = data_dir / "redis"
        redis_dir.mkdir(exist_ok=True)
        redis_url = env["FLEET_REDIS_URL"] = f"redis://127.0.0.1:{PRIVATE_REDIS_PORT}/0"
        manager.add_process(
            "redis",
            supervised(
                "redis",
                f"{binary} --port {PRIVATE_REDIS_PORT} --bind 127.0.0.1 --save '' --appendonly no --dir {redis_dir}",
            ),
            cwd=str(ROOT),
            env=env,
        )
        print(f"starting a private Redis at {redis_url}")

    run("migrate", "--noinput", "-v0", env=env)
    run("ensure_admin", env=env)

    sim_dir = data_dir / "sim"
    # The local git host's repositories are the simulated sites' own (the simulator serves them to its
    # agents from that directory): onboarding commits each site's base stack there.
    env.setdefault("FLEET_REPO_ROOT", str(sim_dir / "repos"))
    control_plane = f"http://127.0.0.1:{WEB_PORT}"
    simulator = f"{PY} -m simulator --sites {args.sites} --port {SIM_PORT} --state-dir {sim_dir}"
    manager.add_process(
        "simulator", supervised("simulator", f"{simulator} --control-plane {control_plane}"), cwd=str(ROOT), env=env
    )
    # The web process imports the simulated fleet once the simulator has written it, queues a probe of every
    # site (nodes' last seen and health at once, not at the next periodic probe) and onboards it (each
    # site's base stack committed through the local git host, its edge pointed at it: the worker does it),
    # starts the demo rollout of a sample release across it (a rerun reports the one going), leaves the
    # faults to a background command that waits for their sites' onboarding, then serves, supervised from
    # then on (a failed import still stops the stack).
    demo = f"{PY} manage.py demo_rollout --bake {args.bake} --max-parallel {args.max_parallel} && " if args.demo else ""
    faults = ""
    if args.offline or args.failing:
        chosen = ("" if args.offline else "--offline '' ") + ("" if args.failing else "--failing '' ")
        faults = f"({PY} manage.py dev_faults {chosen}{sim_dir} &) && "
    manager.add_process(
        "web",
        f"{PY} manage.py fleet_import --probe --onboard --wait 60 {sim_dir / 'fleet.json'} && {demo}{faults}"
        f"exec {supervised('web', f'{PY} manage.py runserver 0.0.0.0:{WEB_PORT} --noreload')}",
        cwd=str(ROOT),
        env=env,
    )
    manager.add_process(
        "worker",
        supervised("worker", f"{PY} -m celery -A fleet worker -Q control,io -c 2 -l INFO"),
        cwd=str(ROOT),
        env=env,
    )
    manager.add_process(
        "beat",
        supervised("beat", f"{PY} -m celery -A fleet beat -l INFO --pidfile={data_dir / 'beat.pid'}"),
        cwd=str(ROOT),
        env=env,
    )
    manager.add_process("flower", supervised("flower", f"{PY} -m fleet.flower"), cwd=str(ROOT), env=env)

    print(
        f"\nedgefleet: admin http://127.0.0.1:{WEB_PORT}/admin/  API http://127.0.0.1:{WEB_PORT}/api/v1/  "
        f"docs http://127.0.0.1:{WEB_PORT}/api/docs/  Flower http://127.0.0.1:{FLOWER_PORT}/ "
        f"(user {env.get('FLEET_FLOWER_USER', 'admin')})  simulator https://127.0.0.1:{SIM_PORT}/\n"
    )
    manager.loop()
    return manager.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
