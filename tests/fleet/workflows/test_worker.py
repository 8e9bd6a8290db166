"""The engine with real Celery workers on a real Redis: runs complete, a SIGKILLed worker's run is taken
over after its lease, and runs waiting through a broker restart still complete."""

import sys
import time
from pathlib import Path

import pytest

from fleet.workflows import dispatch
from fleet.workflows.choices import RunState, StepState
from fleet.workflows.models import StepRun, WorkflowRun
from fleet.workflows.services import workflow_start
from fleet.workflows.tasks import workflow_sweep_task
from tests.support import RedisServer, log_has, start_process, stop_process, wait_until
from tests.support.services import ROOT, Worker, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def states(runs: list[WorkflowRun]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for state in WorkflowRun.objects.filter(pk__in=[r.pk for r in runs]).values_list("state", flat=True):
        counts[state] = counts.get(state, 0) + 1
    return counts


def test_runs_complete_end_to_end(celery_worker: Worker) -> None:
    runs = [workflow_start(kind="noop", subject=None, actor="test", source="test") for _ in range(10)]
    runs += [
        workflow_start(kind="demo.sleepless_wait", subject=None, actor="test", source="test", context={"seconds": 1})
        for _ in range(2)
    ]

    wait_until(lambda: states(runs) == {RunState.SUCCEEDED: 12}, 30, "all runs succeeding")

    assert StepRun.objects.filter(run__kind="noop", state=StepState.DONE).count() == 50
    waited = StepRun.objects.filter(run__kind="demo.sleepless_wait", step="wait")
    assert sorted(waited.values_list("state", flat=True)) == ["done", "done", "waiting", "waiting"]


def test_a_run_whose_worker_is_killed_mid_step_completes_once_after_its_lease(
    short_lease_worker: Worker, tmp_path: Path
) -> None:
    run = workflow_start(
        kind="test.block_on_file", subject=None, actor="test", source="test", context={"dir": str(tmp_path)}
    )
    wait_until(lambda: (tmp_path / "attempts").exists(), 15, "the step starting")

    short_lease_worker.stop(kill=True)  # SIGKILL, children included, while the step blocks
    (tmp_path / "release").touch()
    short_lease_worker.start()
    restarted = time.monotonic()
    wait_until(
        lambda: WorkflowRun.objects.get(pk=run.pk).state == RunState.SUCCEEDED,
        30,
        "the run completing after the crash",
        every=workflow_sweep_task,  # what beat does every few seconds
    )
    recovery = time.monotonic() - restarted

    assert (tmp_path / "effect").read_text() == f"{run.pk}\n"  # the side effect happened exactly once
    assert len((tmp_path / "attempts").read_text().split()) >= 2  # the step was run again
    timeline = list(StepRun.objects.filter(run=run).values_list("step", "state"))
    assert ("block", StepState.TIMED_OUT) in timeline  # the lost attempt is visible
    assert timeline[-2:] == [("block", StepState.DONE), ("finish", StepState.DONE)]
    # Within the step's lease (2 s timeout + grace = 7 s) and a sweep, plus the worker's own start-up.
    assert recovery < 15


def test_waiting_runs_complete_through_a_broker_restart(
    private_redis: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = worker_env(private_redis.url, tmp_path)
    env.update({"FLEET_WORKFLOW_SWEEP_SECONDS": "0.5", "FLEET_WORKFLOW_REDELIVER_SECONDS": "1"})
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    beat = start_process(
        [sys.executable, "-m", "tests.fleet.workflows.sweeper_loop"], log=tmp_path / "sweeper.log", cwd=ROOT, env=env
    )
    try:
        # This process sends nothing: the private sweeper finds the new runs and wakes them on its Redis.
        monkeypatch.setattr(dispatch, "enqueue_advance", lambda *args, **kwargs: True)
        runs = [
            workflow_start(
                kind="demo.sleepless_wait", subject=None, actor="test", source="test", context={"seconds": 3}
            )
            for _ in range(10)
        ]
        wait_until(lambda: states(runs) == {RunState.WAITING: 10}, 20, "all runs waiting")

        private_redis.stop()  # every queued message is gone with it
        wait_until(
            lambda: log_has(worker.log_path, b"Connection to broker lost", b"Cannot connect to redis"),
            30,
            "the worker noticing the broker gone",
        )
        private_redis.start()

        wait_until(lambda: states(runs) == {RunState.SUCCEEDED: 10}, 30, "all runs completing after the restart")
    finally:
        stop_process(beat)
        worker.stop()
