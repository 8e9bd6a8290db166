"""What the web server answers with: HTTPS and cookies, the REST API and its schema, the API's secrets
(token lifetime, Idempotency-Key records, the metrics token) and the cache that holds the throttles."""

from urllib.parse import urlsplit, urlunsplit

from fleet.settings.base import PRODUCTION, REDIS_URL, env

# --- HTTPS (on in production; the start-up checks at the end refuse it turned off) -------------------
# Behind FLEET_TRUSTED_PROXIES TLS-terminating proxies, X-Forwarded-Proto says whether the client used
# HTTPS; with no proxy declared nobody may claim it for the client. /healthz stays reachable over plain
# HTTP for load balancers (FLEET_SECURE_REDIRECT_EXEMPT: regular expressions of paths without the /).
FLEET_TRUSTED_PROXIES = env.int("FLEET_TRUSTED_PROXIES", default=0)
SECURE_SSL_REDIRECT = env.bool("FLEET_SECURE_SSL_REDIRECT", default=PRODUCTION)
SECURE_REDIRECT_EXEMPT = env.list("FLEET_SECURE_REDIRECT_EXEMPT", default=[r"^healthz$"])
SECURE_HSTS_SECONDS = env.int("FLEET_HSTS_SECONDS", default=31_536_000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("FLEET_HSTS_INCLUDE_SUBDOMAINS", default=PRODUCTION)
# The header only allows a browser's preload list to take the domain; nothing is submitted anywhere.
SECURE_HSTS_PRELOAD = env.bool("FLEET_HSTS_PRELOAD", default=PRODUCTION)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = env.bool("FLEET_SECURE_COOKIES", default=PRODUCTION)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
if FLEET_TRUSTED_PROXIES > 0:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- REST API -------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "fleet.api.tokens.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["fleet.api.permissions.ModelPermissions"],
    "DEFAULT_FILTER_BACKENDS": [
        "fleet.api.filters.FleetFilterBackend",  # django-filter's, with bounded numbers and times
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "fleet.api.pagination.StandardPagination",
    "PAGE_SIZE": 50,
    # Bodies bounded in depth and content: no NUL, lone surrogate or non-finite number (fleet.api.parsers).
    "DEFAULT_PARSER_CLASSES": [
        "fleet.api.parsers.FleetJSONParser",
        "fleet.api.parsers.FleetFormParser",
        "fleet.api.parsers.FleetMultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "fleet.api.schema.FleetAutoSchema",  # integer ids stay integers (fleet.api.routers)
    "EXCEPTION_HANDLER": "fleet.api.exceptions.exception_handler",
    # Throttles are keyed by fleet.api.throttling.client_ip (FLEET_TRUSTED_PROXIES, below).
    "DEFAULT_THROTTLE_RATES": {
        "device": env.str("FLEET_DEVICE_THROTTLE", default="120/min"),
        "login": env.str("FLEET_LOGIN_THROTTLE", default="10/min"),
    },
    "NUM_PROXIES": FLEET_TRUSTED_PROXIES,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "edgefleet API",
    "DESCRIPTION": "Control plane for fleets of edge K3s locations: inventory, machine lifecycle, rollouts.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Served from our own static files: nothing is fetched from elsewhere at run time.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The schema and its docs map the whole API: a login (session or token) to read them.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Many models have a `state`; name each enum after its choices so the schema stays readable.
    "ENUM_NAME_OVERRIDES": {
        "SiteStateEnum": "sites.choices.SiteState",
        "NodeStateEnum": "sites.choices.NodeState",
        "BootstrapTokenStateEnum": "sites.choices.BootstrapTokenState",
        "RolloutStateEnum": "rollouts.choices.RolloutState",
        "WaveStateEnum": "rollouts.choices.WaveState",
        "SiteRolloutStateEnum": "rollouts.choices.SiteRolloutState",
        "RunStateEnum": "fleet.workflows.choices.RunState",
        "StepStateEnum": "fleet.workflows.choices.StepState",
    },
}

# --- API secrets: tokens, Idempotency-Key records, throttle cache, metrics -------------------------------
# Integration tokens expire this many days after issue (staff may choose another lifetime in the admin).
FLEET_API_TOKEN_TTL_DAYS = env.int("FLEET_API_TOKEN_TTL_DAYS", default=90)
# How long a POST's Idempotency-Key is remembered; purged hourly by beat.
FLEET_IDEMPOTENCY_HOURS = env.float("FLEET_IDEMPOTENCY_HOURS", default=24.0)
# /metrics answers only `Authorization: Bearer <token>` when set; production refuses to start without it.
METRICS_TOKEN = env.str("FLEET_METRICS_TOKEN", default="")


def redis_database(url: str, database: int) -> str:
    """`url` with another database number: the cache must not share the broker's (a cache clear is a FLUSHDB)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


# The cache holds the throttle counters (fleet.api.throttling). Production shares them through Redis
# (database 1 of FLEET_REDIS_URL unless FLEET_CACHE_URL says otherwise), so a limit holds across web
# processes; short socket timeouts and the throttles' local fallback keep a Redis outage from stalling
# or refusing requests. Development counts in process memory.
if env.str("FLEET_CACHE_URL", default=""):
    CACHES = {"default": env.cache_url("FLEET_CACHE_URL")}
elif PRODUCTION:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_database(REDIS_URL, 1),
            "KEY_PREFIX": "edgefleet",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "edgefleet"}}
if CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
    CACHES["default"].setdefault("OPTIONS", {}).update({"socket_connect_timeout": 0.5, "socket_timeout": 0.5})
