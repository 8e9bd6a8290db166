"""tests/support: the integration-marker check fires, wait_until says what it waited for, and a teardown
flush that lost a deadlock is tried again."""

import os
from pathlib import Path
from typing import Any

import pytest

from tests.support import WaitTimeout, wait_until

ROOT = Path(__file__).resolve().parent.parent

INNER_TESTS = """
import sys

import pytest

from simulator.harness import start_process, stop_process


@pytest.fixture(scope="module")
def server():
    proc = start_process([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    stop_process(proc, kill=True)


@pytest.mark.integration
def test_marked_sets_the_server_up(server):
    assert server.poll() is None


def test_unmarked_uses_the_server_already_up(server):
    pass


def test_unmarked_starts_a_process_itself():
    stop_process(start_process([sys.executable, "-c", "pass"]))


def test_unmarked_uses_a_fixture_known_by_name(redis_url):
    pass


def test_unmarked_and_innocent():
    pass
"""


@pytest.mark.integration  # it runs pytest in a subprocess, which starts processes
def test_an_unmarked_test_that_starts_a_process_or_uses_a_fixture_that_does_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    pytester.makeini("[pytest]\nmarkers =\n    integration: starts processes\n")
    pytester.makeconftest(
        'import pytest\n\npytest_plugins = ["tests.support.integration"]\n\n\n'
        '@pytest.fixture\ndef redis_url():\n    return "redis://nowhere"\n'
    )
    pytester.makepyfile(test_inner=INNER_TESTS)

    result = pytester.runpytest_subprocess("-p", "no:django", "-p", "no:cacheprovider", "-q")

    result.assert_outcomes(passed=2, failed=1, errors=2)
    for line in (
        "*test_unmarked_uses_the_server_already_up is not marked integration but uses fixture server (*-c import time*",
        "*test_unmarked_starts_a_process_itself is not marked integration but starts `*-c pass`*",
        "*test_unmarked_uses_a_fixture_known_by_name is not marked integration but uses fixture redis_url*",
    ):
        result.stdout.fnmatch_lines([line])
    assert "test_unmarked_and_innocent is not marked" not in result.stdout.str()


def test_wait_until_returns_the_first_truthy_value() -> None:
    values = iter([0, None, "", "found"])
    assert wait_until(lambda: next(values), 5, "a value", interval=0) == "found"


def test_wait_until_names_what_it_waited_for_and_the_last_value_seen() -> None:
    with pytest.raises(WaitTimeout, match=r"the door opening did not happen within 0 s \(last value: \[\]\)\nthe log"):
        wait_until(lambda: [], 0, "the door opening", explain=lambda: "the log")


def test_a_flush_that_lost_a_deadlock_to_a_live_worker_is_tried_again_and_nothing_else_is() -> None:
    from django.core.management.base import CommandError
    from django.db import OperationalError

    from tests.support.flush import retrying_flush

    calls: list[str] = []

    def flush_losing(times: int, error: str) -> Any:
        def teardown(_: Any) -> str:
            calls.append(error)
            if len(calls) <= times:
                raise CommandError("Database test couldn't be flushed") from OperationalError(error)
            return "flushed"

        return retrying_flush(teardown)

    assert flush_losing(2, "deadlock detected")(None) == "flushed"
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(CommandError):
        flush_losing(1, "relation does not exist")(None)
    assert len(calls) == 1
