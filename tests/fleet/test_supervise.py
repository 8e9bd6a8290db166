"""fleet.supervise: a long-running process that exits is started again; a stop signal stops it for good."""

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.supervise import backoff_after
from fleet.workflows.choices import RunState
from fleet.workflows.models import WorkflowRun
from fleet.workflows.services import workflow_start
from tests.support import start_process, stop_process, wait_until
from tests.support.services import ROOT, worker_env

BACKOFF = {"min_backoff": 1.0, "max_backoff": 30.0, "healthy_after": 60.0}


def test_backoff_doubles_while_the_process_keeps_dying_and_resets_after_a_healthy_run() -> None:
    waits, wait = [], 0.0
    for _ in range(7):
        wait = backoff_after(previous=wait, ran_for=0.5, **BACKOFF)
        waits.append(wait)
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff_after(previous=30.0, ran_for=60.0, **BACKOFF) == 1.0


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`python -m fleet.supervise` around a shell loop that records each start in a file."""
    starts = tmp_path / "starts"
    script = f"echo $$ >> {starts}; while :; do sleep 0.1; done"
    proc = start_process(
        [sys.executable, "-m", "fleet.supervise", "--name", "loop", "--min-backoff", "0.1", "--", "sh", "-c", script],
        log=tmp_path / "supervise.log", cwd=ROOT,
    )  # fmt: skip
    yield proc, starts
    stop_process(proc, kill=True)


def started(starts: Path) -> list[int]:
    return [int(line) for line in starts.read_text().split()] if starts.exists() else []


@pytest.mark.integration
def test_a_killed_command_is_started_again_and_sigterm_stops_it_for_good(
    supervised: tuple[subprocess.Popen[bytes], Path],
) -> None:
    proc, starts = supervised
    wait_until(lambda: len(started(starts)) == 1, 15, "the first start")

    os.kill(started(starts)[0], signal.SIGKILL)
    wait_until(lambda: len(started(starts)) == 2, 15, "a start after the SIGKILL")

    current = started(starts)[1]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 128 + signal.SIGTERM  # the command's own exit, passed on
    wait_until(lambda: not os.path.exists(f"/proc/{current}"), 15, "the command ending with its supervisor")
    assert len(started(starts)) == 2  # and it was not started again


@pytest.mark.integration
def test_ctrl_c_stops_the_command_without_a_restart(supervised: tuple[subprocess.Popen[bytes], Path]) -> None:
    proc, starts = supervised
    wait_until(lambda: len(started(starts)) == 1, 15, "the first start")

    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=15)
    assert len(started(starts)) == 1


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_supervised_worker_killed_with_its_children_is_started_again_and_takes_work(
    redis_url: str, tmp_path: Path
) -> None:
    """The worker's main process and pool SIGKILLed: the supervisor starts a new worker, as make dev and
    the Procfile run it, and that worker runs what is sent next."""
    env = {**worker_env(redis_url, tmp_path), "FLEET_WORKFLOW_LEASE_SECONDS": "3"}
    log_path = tmp_path / "worker.log"
    proc = start_process(
        [sys.executable, "-m", "fleet.supervise", "--name", "worker", "--min-backoff", "0.2", "--",
         sys.executable, "-m", "celery", "-A", "fleet", "worker", "-Q", "control,io", "-c", "1",
         "--without-gossip", "--without-mingle", "-l", "INFO", "-n", f"supervised-{os.getpid()}@%h"],
        log=log_path, cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        wait_until(lambda: log_path.read_bytes().count(b" ready.") == 1, 60, "the worker starting")
        first = children(proc.pid)
        assert len(first) == 1

        for pid in [*children(first[0]), first[0]]:  # the pool's children, then the main process
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: log_path.read_bytes().count(b" ready.") == 2, 60, "a new worker starting")
        assert children(proc.pid) != first

        runs = [workflow_start(kind="noop", subject=None, actor="test", source="test") for _ in range(3)]
        wait_until(
            lambda: (
                set(WorkflowRun.objects.filter(pk__in=[r.pk for r in runs]).values_list("state", flat=True))
                == {RunState.SUCCEEDED}
            ),
            60,
            "the restarted worker running new work",
        )
    finally:
        stop_process(proc, timeout=60)
