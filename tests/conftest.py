"""Shared fixtures: API clients with and without permissions, a real Redis and a real Celery worker.

`redis_url` and `celery_worker` are session fixtures and live here only: a sub-conftest that overrode
`redis_url` would not move the cached session worker, which keeps the broker of whichever test set it up
first, so a test could publish to one Redis while the worker listens on another (and test order would
decide). `pytest_collection_modifyitems` refuses such an override. A test that needs a broker of its own
(to kill it, or to give its worker other settings) starts a `RedisServer` and a `Worker` of its own, as
the `private_redis` fixture below gives one).
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

from fleet.celery import app as celery_app
from tests.factories import UserFactory
from tests.support import RedisServer, flush
from tests.support.services import Worker, redis_server, worker_env

pytest_plugins = ["tests.support.integration", "pytester"]

SESSION_SERVICES = ("redis_url", "celery_worker")
flush.install()  # a transactional test's teardown races a live worker: see tests/support/flush.py


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fail the run if any test would get `redis_url` or `celery_worker` from somewhere else than here."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        for name in SESSION_SERVICES:
            defs = info.name2fixturedefs.get(name, ()) if info is not None else ()
            if defs and getattr(defs[-1].func, "__module__", __name__) != __name__:
                raise pytest.UsageError(
                    f"{item.nodeid} gets the session fixture {name} from {defs[-1].func.__module__}: "
                    f"{name} is defined once, in tests/conftest.py (see its docstring)"
                )


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis for this test session (flushed first), also used as the test process's broker and the
    session worker's: there is one per session, never overridden (see the module docstring)."""
    with redis_server() as url:
        redis.Redis.from_url(url).flushdb()
        previous = celery_app.conf.broker_url
        celery_app.conf.broker_url = url  # before the first publish creates the producer pool
        yield url
        celery_app.conf.broker_url = previous


@pytest.fixture(scope="session", autouse=True)
def git_local_roots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests keep bare repositories and simulated fleets in pytest's temporary directory: let git use local
    repositories there too, as an embedded set-up lists its own in FLEET_GIT_LOCAL_ROOTS (the worker
    process gets the same list through worker_env)."""
    previous = settings.FLEET_GIT_LOCAL_ROOTS
    settings.FLEET_GIT_LOCAL_ROOTS = [*previous, tmp_path_factory.getbasetemp().resolve()]
    yield
    settings.FLEET_GIT_LOCAL_ROOTS = previous


@pytest.fixture(scope="session")
def celery_worker(
    django_db_setup: None,
    django_db_blocker: object,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    git_local_roots: None,
) -> Iterator[Worker]:
    """A real `celery -A fleet worker` on the test database and the test Redis, for the whole session.

    Tests that use it must be `@pytest.mark.django_db(transaction=True)` so the worker sees their rows.
    """
    data_dir = tmp_path_factory.mktemp("worker")
    worker = Worker(worker_env(redis_url, data_dir), data_dir / "worker.log")
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may stop, kill and start again (never the session's)."""
    if not RedisServer.available():
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_throttle_counts() -> Iterator[None]:
    """Throttle counters live in the cache (process memory in tests): every test starts with none."""
    from django.core.cache import cache

    from fleet.api.throttling import throttle_cache

    cache.clear()
    throttle_cache.clear_local()
    yield


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def admin_user(db: None) -> object:
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def staff(admin_user: object) -> Client:
    """The admin site's client, logged in as the superuser."""
    client = Client()
    client.force_login(admin_user)  # type: ignore[arg-type]
    return client


@pytest.fixture
def admin_api(admin_user: object) -> APIClient:
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


READ_ONLY_PERMS = [
    "sites.view_site",
    "sites.view_node",
    "sites.view_cluster",
    "audit.view_auditevent",
]


@pytest.fixture
def readonly_api(db: None) -> APIClient:
    """A support user who may look at everything and change nothing."""
    client = APIClient()
    client.force_authenticate(UserFactory(username="support", perms=READ_ONLY_PERMS))
    return client
