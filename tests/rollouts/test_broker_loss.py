"""A rollout survives losing its broker: Redis SIGKILLed mid-wave and restarted empty, with the same worker
and beat processes running throughout (nobody restarts them), and every site gets exactly one commit.

This is the reproducer for the worker that exited on the first Redis loss (kombu's Redis transport raised
`AttributeError: 'NoneType' object has no attribute 'hostname'` while restoring unacknowledged messages
of the lost connection); see fleet/celery_fixes.py.
"""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rollouts.choices import RolloutState, SiteRolloutState
from rollouts.models import Rollout, SiteRollout
from simulator.testing import Simulator
from tests.rollouts.conftest import commit_count, rollout_state
from tests.rollouts.test_workflow import release, start
from tests.support import RedisServer, log_has, log_tail, wait_until
from tests.support.services import Beat, Worker, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stack(private_redis: RedisServer, tmp_path: Path) -> Iterator[tuple[Worker, Beat]]:
    """A worker and beat of their own on the killable Redis, sweeping every second."""
    env = worker_env(private_redis.url, tmp_path)
    env.update({"FLEET_WORKFLOW_SWEEP_SECONDS": "1", "FLEET_WORKFLOW_REDELIVER_SECONDS": "5"})
    worker = Worker(env, tmp_path / "worker.log", as_deployed=True)
    worker.start()
    beat = Beat(env, tmp_path)
    yield worker, beat
    beat.stop()
    worker.stop()


def wait(check: Callable[[], object], seconds: float, what: str, *, worker: Worker) -> None:
    """`wait_until`, failing at once if the worker exits (it must survive the broker's loss)."""
    wait_until(
        check,
        seconds,
        what,
        interval=0.25,
        every=lambda: worker.check_alive(f"while waiting for {what}"),
        explain=lambda: log_tail(worker.log_path),
    )


# What beat logs when it finds the broker gone: sending a due task fails ("Couldn't apply scheduled task"),
# or its connection does ("beat: Connection error"), whichever comes first on this machine.
BROKER_GONE = (b"Couldn't apply scheduled task", b"beat: Connection error")


def broker_gone_count(beat: Beat) -> int:
    data = beat.log_path.read_bytes()
    return sum(data.count(text) for text in BROKER_GONE)


def site_states(rollout: Rollout) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in SiteRollout.objects.filter(rollout=rollout).values_list("state", flat=True):
        counts[value] = counts.get(value, 0) + 1
    return counts


def test_a_rollout_completes_through_redis_killed_twice_mid_wave_without_restarting_anything(
    private_redis: RedisServer, stack: tuple[Worker, Beat], simulated_fleet: Callable[[int], Simulator]
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
        failures = broker_gone_count(beat)

        # When Redis dies and comes back empty: every queued and unacknowledged message is gone.
        private_redis.kill()
        wait(lambda n=failures: broker_gone_count(beat) > n, 60, "beat finding the broker gone", worker=worker)  # type: ignore[misc]
        private_redis.start()

    # Then the same worker and beat finish the rollout: the sweeper re-sends what Redis lost.
    wait(lambda: rollout_state(rollout) == RolloutState.SUCCEEDED, 180, "the rollout succeeding", worker=worker)
    assert worker.proc is not None and worker.proc.pid == worker_pid and worker.proc.poll() is None
    assert beat.proc.poll() is None, "beat exited"
    assert site_states(rollout) == {SiteRolloutState.SUCCEEDED: len(sim.codes)}
    after = {code: commit_count(sim.repo_path(code)) for code in sim.codes}
    assert {code: after[code] - before[code] for code in sim.codes} == dict.fromkeys(sim.codes, 1)
    assert not log_has(worker.log_path, b"Unrecoverable error")
