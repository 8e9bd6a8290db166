"""A pytest plugin: a test that starts a process, or uses a fixture that does, must be marked `integration`.

`-m "not integration"` then really runs without Redis, workers or a simulator, and a reader knows from the
marker which tests are slow and talk to real components. What counts:

- a process started through `simulator.harness.start_process` (every long-running process of the tests
  goes through it: redis-server, a Celery worker or beat, the simulator, Flower, the supervisor), in the
  test body or in any fixture the test uses, also when another test set that fixture up first;
- the fixtures in PROCESS_FIXTURES, whatever they did this time (`redis_url` may reuse a Redis named by
  FLEET_TEST_REDIS_URL; `live_server` serves the control plane from a thread for processes to call).

Short commands (`git`, `kubectl`) run with `subprocess.run` are not processes in this sense. An unmarked
test that qualifies fails, with the fixture or command named in the message.
"""

from collections.abc import Generator, Sequence
from typing import Any

import pytest

from simulator import harness

PROCESS_FIXTURES = frozenset({"celery_worker", "redis_url", "live_server"})

_started: list[str] = []  # the commands start_process ran in this test session, in order
_starting_fixtures: dict[Any, str] = {}  # FixtureDef -> the first command it started


def _record(args: Sequence[str]) -> None:
    _started.append(" ".join(str(arg) for arg in args[:6]))


def pytest_configure(config: pytest.Config) -> None:
    if _record not in harness.on_start:
        harness.on_start.append(_record)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _record in harness.on_start:
        harness.on_start.remove(_record)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: pytest.FixtureRequest) -> Generator[None, Any, Any]:
    before = len(_started)
    try:
        return (yield)
    finally:
        if len(_started) > before:
            _starting_fixtures.setdefault(fixturedef, _started[before])


def process_fixtures(item: pytest.Item) -> list[str]:
    """The fixtures `item` uses that start a process (known by name, or seen starting one)."""
    info = getattr(item, "_fixtureinfo", None)
    found = []
    for name in getattr(item, "fixturenames", ()):
        defs = info.name2fixturedefs.get(name, ()) if info is not None else ()
        starting = [_starting_fixtures[d] for d in defs if d in _starting_fixtures]
        if name in PROCESS_FIXTURES or starting:
            found.append(f"{name} ({starting[0]})" if starting else name)
    return found


def _check(item: pytest.Item, started: list[str]) -> None:
    if item.get_closest_marker("integration") is not None:
        return
    reasons = [f"uses fixture {name}" for name in process_fixtures(item)]
    reasons += [f"starts `{command}`" for command in started]
    if reasons:
        pytest.fail(
            f"{item.nodeid} is not marked integration but {'; '.join(dict.fromkeys(reasons))}: add "
            "@pytest.mark.integration to it (or `pytestmark = pytest.mark.integration` to its module)",
            pytrace=False,
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    before = len(_started)
    yield
    _check(item, _started[before:])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    before = len(_started)
    try:
        yield
    finally:
        _check(item, _started[before:])
