"""Run one fault experiment and print its verdict table; the exit status is 0 only when every check passed.

    .venv/bin/python -m bench.faults SCENARIO [--sites 300] [--scale 1.0] [--database URL] [--keep]

Scenarios: bench/faults/scenarios.py (processes: Redis, PostgreSQL, workers, hosts, disks, clocks) and
bench/faults/outside.py (the edge, the git host); docs/RELIABILITY.md has the table of results. The database
(default: FLEET_DATABASE_URL's name + `_exp`, e.g. wt_faults_exp) is dropped and created for the run.
"""

import argparse
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from urllib.parse import urlsplit

import bench.faults.outside  # noqa: F401 - registers the edge and git host experiments
from bench.faults.lab import Lab
from bench.faults.scenarios import SCENARIOS, lab_options
from bench.faults.verdict import Outcome


def default_database() -> str:
    url = os.environ.get("FLEET_DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/edgefleet"
    parts = urlsplit(url)
    if not parts.scheme.startswith("postgres"):
        sys.exit("bench.faults: needs PostgreSQL (FLEET_DATABASE_URL or --database postgres://...)")
    return parts._replace(path=parts.path.rstrip("/") + "_exp").geturl()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--sites", type=int, default=300)
    parser.add_argument("--scale", type=float, default=1.0, help="fault durations x this (the suite: < 1)")
    parser.add_argument("--database", default=None, help="a PostgreSQL URL; dropped and created")
    parser.add_argument("--concurrency", type=int, default=2, help="prefork processes per worker")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix=f"edgefleet-faults-{args.scenario}-"))
    options = lab_options(args.scenario)
    lab = Lab(
        sites=args.sites, database_url=args.database or default_database(), tmp=tmp, concurrency=args.concurrency,
        **options,
    )  # fmt: skip
    try:
        lab.start()
        outcome = SCENARIOS[args.scenario](lab, scale=args.scale)
    except Exception as exc:  # noqa: BLE001 - the verdict says what broke, and the logs are kept
        traceback.print_exc()
        outcome = Outcome(args.scenario, "(set-up or experiment raised)")
        outcome.check("experiment ran", False, f"{type(exc).__name__}: {exc}")
        args.keep = True
    finally:
        try:
            lab.close()
        except Exception:  # noqa: BLE001 - a process slow to stop must not hide the verdict
            traceback.print_exc()
    outcome.figures = {"fleet": args.sites, **outcome.figures}
    print(outcome.table())
    if args.keep or not outcome.passed:
        print(f"logs and state in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if outcome.passed else 1


if __name__ == "__main__":
    sys.exit(main())
