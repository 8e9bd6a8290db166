"""fleet.liveness: the worker's event loop keeps a file fresh; a probe says when it went stale."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.liveness import age, main, touch
from tests.support import wait_until
from tests.support.services import ROOT, Worker, worker_env


def test_the_probe_passes_a_fresh_file_and_fails_a_stale_or_missing_one(tmp_path: Path) -> None:
    path = str(tmp_path / "alive")
    assert main([path]) == 1  # not started yet

    touch(path)
    assert main([path, "--max-age", "60"]) == 0

    os.utime(path, (0, 0))  # last touched in 1970
    assert main([path, "--max-age", "60"]) == 1
    assert age(path) is not None and age(path) > 60  # type: ignore[operator]


def probe(path: Path, max_age: float) -> int:
    return subprocess.run(
        [sys.executable, "-m", "fleet.liveness", str(path), "--max-age", str(max_age)], cwd=ROOT, check=False
    ).returncode


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_worker_keeps_its_file_fresh_until_its_loop_stops(redis_url: str, tmp_path: Path) -> None:
    alive = tmp_path / "worker-alive"
    env = {**worker_env(redis_url, tmp_path), "FLEET_WORKER_LIVENESS_FILE": str(alive)}
    env["FLEET_WORKER_LIVENESS_SECONDS"] = "0.5"
    worker = Worker(env, tmp_path / "worker.log", concurrency=1)
    worker.start()
    try:
        wait_until(lambda: alive.exists(), 30, "the worker creating its liveness file")
        first = alive.stat().st_mtime
        wait_until(lambda: alive.stat().st_mtime > first, 30, "the worker touching it again")
        assert probe(alive, 30) == 0

        assert worker.proc is not None
        os.kill(worker.proc.pid, signal.SIGSTOP)  # the main loop stops turning, as a hung one would
        try:
            stopped_at = alive.stat().st_mtime
            wait_until(lambda: probe(alive, 2) == 1, 30, "the probe seeing the file go stale")
            assert alive.stat().st_mtime == stopped_at
        finally:
            os.kill(worker.proc.pid, signal.SIGCONT)
        wait_until(lambda: probe(alive, 2) == 0, 30, "the file fresh again once the loop turns")
    finally:
        worker.stop()
