"""Throttles keyed by the client's address and counted in the shared cache: logins and the device API.

The address is REMOTE_ADDR; behind FLEET_TRUSTED_PROXIES reverse proxies (each appends the address it
saw to X-Forwarded-For) it is that many entries from the right of X-Forwarded-For, the address the
outermost trusted proxy saw. Entries further left were written by the client and are ignored, so a
forged header cannot buy a fresh allowance.

Counts live in the default cache: Redis in production, so every web process shares them. When the cache
fails, a throttle counts in process memory for a while and logs that once a minute. Failing closed would
let a Redis outage take the device API (heartbeats, registrations) and every login down with it; failing
open would lift the login limit exactly when an attacker breaks the cache. Counting per process keeps a
limit (times the number of processes) and the fleet up.
"""

import ipaddress
import logging
import math
import time
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from rest_framework.throttling import SimpleRateThrottle

log = logging.getLogger(__name__)


def client_ip(request: Any) -> str:
    """The client's address as the outermost trusted proxy saw it (REMOTE_ADDR without proxies)."""
    remote = str(request.META.get("REMOTE_ADDR") or "unknown")
    hops = int(settings.FLEET_TRUSTED_PROXIES)
    if hops <= 0:
        return remote
    forwarded = [part.strip() for part in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")]
    forwarded = [part for part in forwarded if part]
    if not forwarded:
        return remote  # the request did not come through the proxies
    # Fewer entries than proxies: the client reached an inner proxy directly; the leftmost was still
    # written by a trusted proxy (a proxy appends, it never lets the client's header be the last word).
    candidate = forwarded[-min(hops, len(forwarded))]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


class ThrottleCache(BaseCache):
    """What DRF's throttles use of a cache (get/set), over the default cache, counting locally while it fails."""

    RETRY_SECONDS = 10.0  # how long to count locally before trying the shared cache again
    LOG_EVERY_SECONDS = 60.0

    def __init__(self) -> None:
        super().__init__({})
        self.local = LocMemCache("edgefleet-throttle-fallback", {"OPTIONS": {"MAX_ENTRIES": 10_000}})
        self._down_until = 0.0
        self._logged_at = -math.inf

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        if time.monotonic() >= self._down_until:
            try:
                return caches["default"].get(key, default, version)
            except Exception as exc:  # noqa: BLE001 - any cache backend's failure, whatever its type
                self._failed(exc)
        return self.local.get(key, default, version)

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        if time.monotonic() >= self._down_until:
            try:
                caches["default"].set(key, value, timeout, version)
                return
            except Exception as exc:  # noqa: BLE001
                self._failed(exc)
        self.local.set(key, value, timeout, version)

    def clear_local(self) -> None:
        self.local.clear()
        self._down_until = 0.0

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        self._down_until = now + self.RETRY_SECONDS
        if now - self._logged_at >= self.LOG_EVERY_SECONDS:
            self._logged_at = now
            log.warning(
                "throttle cache unavailable (%s: %s); counting in this process for %.0f s",
                type(exc).__name__,
                exc,
                self.RETRY_SECONDS,
            )


throttle_cache = ThrottleCache()


class FleetThrottleMixin:
    """For DRF throttles: our client address and the resilient cache (rates: DEFAULT_THROTTLE_RATES)."""

    cache: BaseCache = throttle_cache

    def get_ident(self, request: Any) -> str:
        return client_ip(request)


class LoginThrottle(FleetThrottleMixin, SimpleRateThrottle):
    """Password attempts per client address (FLEET_LOGIN_THROTTLE), shared by `auth/token/` and the
    admin's login form: one allowance however an attacker splits the guesses between them."""

    scope = "login"

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


@never_cache
def throttled_admin_login(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
    """The admin's login view behind LoginThrottle: every POST (an attempt) counts, showing the form does not."""
    if request.method == "POST":
        throttle = LoginThrottle()
        if not throttle.allow_request(request, None):  # type: ignore[arg-type]  # works on any HttpRequest
            seconds = math.ceil(throttle.wait() or 1)
            response = HttpResponse(
                f"Too many login attempts from {client_ip(request)}; try again in {seconds} seconds.\n",
                status=429,
                content_type="text/plain; charset=utf-8",
            )
            response["Retry-After"] = str(seconds)
            return response
    return admin.site.login(request, extra_context)
