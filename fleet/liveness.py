"""A liveness file for processes whose health is "my event loop still turns": the Celery worker.

The worker touches the file from its event loop's timer every `FLEET_WORKER_LIVENESS_SECONDS` (a
bootstep in fleet/celery.py, on when `FLEET_WORKER_LIVENESS_FILE` is set); a probe asks how old it is:

    python -m fleet.liveness /var/lib/edgefleet/worker-alive --max-age 300

exits 0 when the file was touched within `--max-age` seconds and 1 (saying how stale) otherwise, so a
Kubernetes exec probe restarts a worker whose main loop hung, which no HTTP port would show.
"""

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def touch(path: str) -> None:
    """Mark the process alive now (creates the file and its directory if needed)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.touch()
    os.utime(target)


def age(path: str, *, now: float | None = None) -> float | None:
    """Seconds since the file was touched, or None when it does not exist."""
    try:
        modified = Path(path).stat().st_mtime
    except FileNotFoundError:
        return None
    return (time.time() if now is None else now) - modified


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="exit 0 if a liveness file is fresh, 1 if it is stale or missing")
    parser.add_argument("path")
    parser.add_argument("--max-age", type=float, default=300.0, help="seconds (default 300)")
    args = parser.parse_args(argv)
    seconds = age(args.path)
    if seconds is None:
        print(f"{args.path} does not exist: the process has not started its loop", file=sys.stderr)
        return 1
    if seconds > args.max_age:
        print(f"{args.path} was last touched {seconds:.0f} s ago (more than {args.max_age:.0f} s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
