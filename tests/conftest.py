"""Shared fixtures: API clients with and without permissions, a real Redis and a real Celery worker."""

from collections.abc import Iterator

import pytest
import redis
from django.conf import settings
from rest_framework.test import APIClient

from fleet.celery import app as celery_app
from tests.factories import UserFactory
from tests.services import Worker, redis_server, worker_env


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis for this test session (flushed first), also used as the test process's broker."""
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
