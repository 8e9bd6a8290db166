"""A rollout survives losing its broker: Redis SIGKILLed mid-wave and restarted empty, with the same worker
and beat processes running throughout (nobody restarts them), and every site gets exactly one commit.

This is the reproducer for the worker that exited on the first Redis loss (kombu's Redis transport raised
`AttributeError: 'NoneType' object has no attribute 'hostname'` while restoring unacknowledged messages
of the lost connection); see fleet/celery_fixes.py.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rollouts.choices import RolloutState, SiteRolloutState
from rollouts.models import Rollout, SiteRollout
from simulator.testing import Simulator
from tests.fleet.workflows.conftest import PrivateRedis
from tests.rollouts.conftest import commit_count
from tests.rollouts.test_workflow import release, start, state
from tests.services import ROOT, Worker, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


class Beat:
    """A real `celery -A fleet beat` with the database scheduler, for the whole test."""

    def __init__(self, env: dict[str, str], directory: Path) -> None:
        self.log_path = directory / "beat.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "fleet", "beat", "-l", "INFO",
             "--pidfile", str(directory / "beat.pid"), "-s", str(directory / "beat-schedule")],
            cwd=ROOT, env=env, stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stack(broker: PrivateRedis, tmp_path: Path) -> Iterator[tuple[Worker, Beat]]:
    """A worker and beat of their own on the killable Redis, sweeping every second."""
    env = worker_env(broker.url, tmp_path)
    env.update({"FLEET_WORKFLOW_SWEEP_SECONDS": "1", "FLEET_WORKFLOW_REDELIVER_SECONDS": "5"})
    worker = Worker(env, tmp_path / "worker.log", as_deployed=True)
    worker.start()
    beat = Beat(env, tmp_path)
    yield worker, beat
    beat.stop()
    worker.stop()


def kill_redis(server: PrivateRedis) -> None:
    """SIGKILL: no shutdown, nothing saved (the server keeps nothing on disk anyway)."""
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=10)
    server.proc = None


def log_has(path: Path, text: bytes) -> bool:
    return path.exists() and text in path.read_bytes()


def wait(check: Callable[[], bool], seconds: float, what: str, *, worker: Worker) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if worker.proc is None or worker.proc.poll() is not None:
            pytest.fail(f"the worker exited while waiting for {what}:\n{worker.log_path.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {seconds} s:\n{worker.log_path.read_text()[-3000:]}")
        time.sleep(0.25)


def site_states(rollout: Rollout) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in SiteRollout.objects.filter(rollout=rollout).values_list("state", flat=True):
        counts[value] = counts.get(value, 0) + 1
    return counts


def test_a_rollout_completes_through_redis_killed_twice_mid_wave_without_restarting_anything(
    broker: PrivateRedis, stack: tuple[Worker, Beat], simulated_fleet: Callable[[int], Simulator]
) -> None:
    worker, beat = stack
    sim = simulated_fleet(24)
    before = {code: commit_count(sim.repo_path(code)) for code in sim.codes}
    worker_pid = worker.proc.pid if worker.proc else None

    rollout = start(
        release("1.0.0"),
        waves=[{"name": "canary", "percent": 10}, {"name": "all", "percent": 100}],
        max_parallel=3,
    )
    # Beat past its start-up (on a loaded machine it may connect after the first sites are done): until
    # it has sent a task, losing the broker is a start-up retry to it, never "Couldn't apply".
    wait(lambda: log_has(beat.log_path, b"Sending due task"), 60, "beat sending its first task", worker=worker)

    for round_ in range(2):
        # Given sites in flight: some done, the rest still to go.
        done_before = site_states(rollout).get(SiteRolloutState.SUCCEEDED, 0)
        wait(
            lambda n=done_before: site_states(rollout).get(SiteRolloutState.SUCCEEDED, 0) >= n + 3,  # type: ignore[misc]
            90,
            f"three more sites succeeding (round {round_})",
            worker=worker,
        )
        failures = beat.log_path.read_bytes().count(b"Couldn't apply scheduled task")

        # When Redis dies and comes back empty: every queued and unacknowledged message is gone.
        kill_redis(broker)
        wait(
            lambda n=failures: beat.log_path.read_bytes().count(b"Couldn't apply scheduled task") > n,  # type: ignore[misc]
            60,
            "beat finding the broker gone",
            worker=worker,
        )
        broker.start()

    # Then the same worker and beat finish the rollout: the sweeper re-sends what Redis lost.
    wait(lambda: state(rollout) == RolloutState.SUCCEEDED, 180, "the rollout succeeding", worker=worker)
    assert worker.proc is not None and worker.proc.pid == worker_pid and worker.proc.poll() is None
    assert beat.proc.poll() is None, "beat exited"
    assert site_states(rollout) == {SiteRolloutState.SUCCEEDED: len(sim.codes)}
    after = {code: commit_count(sim.repo_path(code)) for code in sim.codes}
    assert {code: after[code] - before[code] for code in sim.codes} == dict.fromkeys(sim.codes, 1)
    assert not log_has(worker.log_path, b"Unrecoverable error")
