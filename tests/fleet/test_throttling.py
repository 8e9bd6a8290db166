"""Throttles: password guesses at auth/token/ and the admin login, and the device API, counted per client
address in the shared cache. Each test tries to get past a limit: more attempts, a forged X-Forwarded-For,
switching between the two login doors, a cache that is down."""

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.test import Client
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from fleet.api.throttling import client_ip, throttle_cache
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

LIMIT = 3
WRONG = {"username": "root", "password": "not-the-password"}


@pytest.fixture(autouse=True)
def _low_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    # DRF reads the rates from this dict (DEFAULT_THROTTLE_RATES), shared by every throttle class.
    monkeypatch.setitem(SimpleRateThrottle.THROTTLE_RATES, "login", f"{LIMIT}/min")
    monkeypatch.setitem(SimpleRateThrottle.THROTTLE_RATES, "device", f"{LIMIT}/min")


def _token_attempt(client: APIClient | None = None, **extra: str) -> int:
    return (client or APIClient()).post("/api/v1/auth/token/", WRONG, format="json", **extra).status_code


def _admin_attempt(**extra: str) -> int:
    return Client().post("/admin/login/", {**WRONG, "next": "/admin/"}, **extra).status_code


def test_login_attempts_beyond_the_limit_are_429(admin_user: Any) -> None:
    statuses = [_token_attempt() for _ in range(LIMIT + 1)]

    assert statuses == [400] * LIMIT + [429]
    response = APIClient().post("/api/v1/auth/token/", WRONG, format="json")
    assert response.status_code == 429 and int(response["Retry-After"]) > 0


def test_the_right_password_is_throttled_too_once_over_the_limit(admin_user: Any) -> None:
    admin_user.set_password("correct horse battery")
    admin_user.save()
    for _ in range(LIMIT):
        _token_attempt()

    right = APIClient().post("/api/v1/auth/token/", {"username": "root", "password": "correct horse battery"})

    assert right.status_code == 429


def test_a_forged_forwarded_for_does_not_buy_new_attempts_without_proxies(admin_user: Any, settings: Any) -> None:
    settings.FLEET_TRUSTED_PROXIES = 0
    statuses = [_token_attempt(HTTP_X_FORWARDED_FOR=f"198.51.100.{i}") for i in range(LIMIT + 1)]
    assert statuses[-1] == 429


def test_behind_a_proxy_the_address_it_saw_counts_not_what_the_client_wrote(admin_user: Any, settings: Any) -> None:
    settings.FLEET_TRUSTED_PROXIES = 1
    # The client writes a different X-Forwarded-For each time; the proxy appends the address it saw.
    statuses = [
        _token_attempt(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}, 203.0.113.7")
        for i in range(LIMIT + 1)
    ]
    assert statuses[-1] == 429
    # Another client behind the same proxy has its own allowance
    assert _token_attempt(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.8") == 400


def test_client_address_with_two_proxies_ignores_everything_left_of_them(settings: Any) -> None:
    settings.FLEET_TRUSTED_PROXIES = 2
    request = APIClient().get("/healthz", REMOTE_ADDR="10.0.0.3", HTTP_X_FORWARDED_FOR="1.1.1.1, 203.0.113.9, 10.0.0.1")
    assert client_ip(request.wsgi_request) == "203.0.113.9"
    settings.FLEET_TRUSTED_PROXIES = 0
    assert client_ip(request.wsgi_request) == "10.0.0.3"


def test_the_admin_login_is_throttled_and_shares_the_allowance_with_auth_token(admin_user: Any) -> None:
    assert Client().get("/admin/login/").status_code == 200  # showing the form is not an attempt
    first = [_admin_attempt() for _ in range(LIMIT - 1)]
    assert first == [200] * (LIMIT - 1)  # the form again, with an error
    assert _token_attempt() == 400  # the last attempt, through the other door

    refused = Client().post("/admin/login/", {**WRONG, "next": "/admin/"})

    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert _token_attempt() == 429


def test_device_registration_is_throttled_per_address_despite_a_forged_header(settings: Any) -> None:
    settings.FLEET_TRUSTED_PROXIES = 0
    body = {"serial": "SN-X", "mac": "52:54:00:00:00:01", "bootstrap_token": "efb_unknown", "facts": {}}
    statuses = [
        APIClient()
        .post("/api/v1/device/register/", body, format="json", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}")
        .status_code
        for i in range(LIMIT + 1)
    ]
    assert statuses == [403] * LIMIT + [429]


@pytest.fixture
def redis_cache(redis_url: str, settings: Any) -> Iterator[redis.Redis]:
    """The default cache on the test Redis (its own database), as production has it."""
    url = redis_url.rsplit("/", 1)[0] + "/5"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}
    client = redis.Redis.from_url(url)
    client.flushdb()
    throttle_cache.clear_local()
    yield client
    client.flushdb()


@pytest.mark.integration
def test_with_redis_the_count_is_shared_across_processes(admin_user: Any, redis_cache: redis.Redis) -> None:
    for _ in range(LIMIT):
        assert _token_attempt() == 400
    assert any(b"throttle_login_" in key for key in redis_cache.keys()), redis_cache.keys()
    # Another web process starts with an empty memory of its own; the count is in Redis
    throttle_cache.clear_local()

    assert _token_attempt() == 429
    assert _token_attempt(HTTP_X_FORWARDED_FOR="198.51.100.1") == 429


@pytest.mark.integration
def test_a_cache_outage_neither_fails_requests_nor_lifts_the_limit(admin_user: Any, settings: Any) -> None:
    from tests.support import free_port

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    throttle_cache.clear_local()

    statuses = [_token_attempt() for _ in range(LIMIT + 1)]

    assert statuses == [400] * LIMIT + [429]  # no 500, and still limited (in this process)
    heartbeat = APIClient().post("/api/v1/device/heartbeat/", {}, format="json", HTTP_AUTHORIZATION="Node efn_x")
    assert heartbeat.status_code == 401  # the device API answers as usual


def test_users_with_tokens_are_not_throttled_by_other_peoples_logins(admin_user: Any) -> None:
    for _ in range(LIMIT + 1):
        _token_attempt()
    reader = APIClient()
    reader.force_authenticate(UserFactory(username="reader", perms=["sites.view_site"]))
    assert reader.get("/api/v1/sites/").status_code == 200
