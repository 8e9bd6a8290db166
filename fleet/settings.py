"""Django settings for edgefleet.

Every setting comes from a `FLEET_*` environment variable (documented in .env.example). The defaults
give the embedded set-up: SQLite under var/, a local Redis, bare git repositories under var/repos.
`FLEET_ENV=production` refuses to start with anything unsafe (the checks are at the end of this file): a
weak or default secret key, malformed or missing Fernet keys, DEBUG, no metrics token, no allowed hosts,
HTTPS settings turned off, an undeclared proxy count.
"""

import base64
import hashlib
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import environ
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

FLEET_ENV = env.str("FLEET_ENV", default="development")
if FLEET_ENV not in {"development", "test", "production"}:
    raise ImproperlyConfigured(f"FLEET_ENV must be development, test or production, not {FLEET_ENV!r}")
PRODUCTION = FLEET_ENV == "production"

DEFAULT_SECRET_KEY = "edgefleet-insecure-development-key-do-not-use-in-production"  # noqa: S105
SECRET_KEY = env.str("FLEET_SECRET_KEY", default=DEFAULT_SECRET_KEY)
DEBUG = env.bool("FLEET_DEBUG", default=not PRODUCTION)
ALLOWED_HOSTS = env.list("FLEET_ALLOWED_HOSTS", default=["*"] if not PRODUCTION else [])
CSRF_TRUSTED_ORIGINS = env.list("FLEET_CSRF_TRUSTED_ORIGINS", default=[])

DATA_DIR = Path(env.str("FLEET_DATA_DIR", default=str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _development_fernet_key(secret: str) -> str:
    """A stable Fernet key derived from the secret key, good enough for a laptop and never for production."""
    return base64.urlsafe_b64encode(hashlib.sha256(("fernet:" + secret).encode()).digest()).decode()


# Fernet keys for credentials at rest: the first encrypts, all of them decrypt, so a new key can be put
# first and `manage.py rotate_secrets` re-encrypts everything before the old key is removed.
FLEET_SECRET_KEYS = env.list("FLEET_SECRET_KEYS", default=[]) or [_development_fernet_key(SECRET_KEY)]

INSTALLED_APPS = [
    "fleet.console.apps.ConsoleAdminConfig",  # django.contrib.admin with the console as its home page
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "fleet",
    "fleet.api",
    "fleet.audit",
    "fleet.workflows",
    "sites",
    "rollouts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "fleet.api.idempotency.IdempotencyMiddleware",
]

ROOT_URLCONF = "fleet.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "fleet.context_processors.fleet_env",
            ],
        },
    },
]

WSGI_APPLICATION = "fleet.wsgi.application"

# SQLite is shared by web, beat and workers in the embedded set-up: WAL lets readers run beside the
# writer, IMMEDIATE transactions take the write lock up front (no upgrade deadlocks) and the timeout
# makes a busy writer wait instead of failing.
DATABASES = {
    "default": env.db_url("FLEET_DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'edgefleet.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # A file, not memory, so a Celery worker started by the tests sees the same test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
# Keep connections (SQLite too: opening one registers Django's functions and runs the PRAGMAs, ~1 ms
# per Celery task, since fleet/celery.py closes expired ones before each task); checked before reuse.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("FLEET_DB_CONN_MAX_AGE", default=60))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # `collectstatic` fills it for production; in development the finders serve
WHITENOISE_USE_FINDERS = DEBUG
# gunicorn serves the admin's and the API docs' static files itself (WhiteNoise): no CDN, no extra server.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

LOGIN_URL = "/admin/login/"

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

# --- Celery ---------------------------------------------------------------------------------------
REDIS_URL = env.str("FLEET_REDIS_URL", default="redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env.str("FLEET_BROKER_URL", default=REDIS_URL)
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Redis re-delivers an unacknowledged message after this long; the sweeper re-enqueues sooner.
    "visibility_timeout": 3600,
    "socket_timeout": 10,
    "socket_connect_timeout": 5,
}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Keep a worker's database connection across tasks (Celery otherwise reconnects for every task, ~10 ms
# on PostgreSQL); fleet/celery.py drops a broken or expired one before each task.
CELERY_DB_REUSE_MAX = env.int("FLEET_CELERY_DB_REUSE_MAX", default=1000)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SOFT_TIME_LIMIT = env.int("FLEET_TASK_SOFT_TIME_LIMIT", default=120)
CELERY_TASK_TIME_LIMIT = env.int("FLEET_TASK_TIME_LIMIT", default=180)
CELERY_TASK_DEFAULT_QUEUE = "control"
CELERY_TASK_QUEUES = (
    Queue("control", Exchange("control"), routing_key="control"),
    Queue("io", Exchange("io"), routing_key="io"),
)
# Tasks that talk to a site (git, Kubernetes) go to `io`, so bookkeeping never queues behind them.
CELERY_TASK_ROUTES = {
    "sites.probe": {"queue": "io"},
    # workflows.advance is sent to the queue its next step declares (Step.queue); this is the default.
    "workflows.advance": {"queue": "control"},
    "workflows.sweep": {"queue": "control"},
    "rollouts.drift_check": {"queue": "control"},
    "rollouts.drift_site": {"queue": "io"},
}
# Workers report received/started/succeeded/failed to Flower. A "sent" event too would be a second
# publish for every message (a few per rollout site); Flower shows queue lengths from the broker.
CELERY_TASK_SEND_SENT_EVENT = False
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
# Workflow engine (fleet.workflows). A worker advancing a run holds its lease this long (a step's
# timeout extends it); a dead worker's run is taken over once it expires. The sweeper wakes runs whose
# wake_at passed, and re-sends a wake-up message that has not been picked up after REDELIVER seconds
# (a lost message: broker restart, crash between commit and publish).
# A file the worker touches from its event loop every FLEET_WORKER_LIVENESS_SECONDS (fleet/liveness.py),
# for a liveness probe (deploy/base/worker.yaml); off when empty.
FLEET_WORKER_LIVENESS_FILE = env.str("FLEET_WORKER_LIVENESS_FILE", default="")
FLEET_WORKER_LIVENESS_SECONDS = env.float("FLEET_WORKER_LIVENESS_SECONDS", default=10.0)
FLEET_WORKFLOW_LEASE_SECONDS = env.float("FLEET_WORKFLOW_LEASE_SECONDS", default=60.0)
FLEET_WORKFLOW_SWEEP_SECONDS = env.float("FLEET_WORKFLOW_SWEEP_SECONDS", default=5.0)
FLEET_WORKFLOW_REDELIVER_SECONDS = env.float("FLEET_WORKFLOW_REDELIVER_SECONDS", default=60.0)
FLEET_WORKFLOW_SWEEP_BATCH = env.int("FLEET_WORKFLOW_SWEEP_BATCH", default=500)
CELERY_BEAT_SCHEDULE = {
    "probe-all-sites": {
        "task": "sites.probe_all",
        "schedule": env.float("FLEET_PROBE_INTERVAL", default=300.0),
    },
    "workflow-sweep": {
        "task": "workflows.sweep",
        "schedule": FLEET_WORKFLOW_SWEEP_SECONDS,
        # A sweep that has waited longer than the interval is superseded by the next one.
        "options": {"expires": FLEET_WORKFLOW_SWEEP_SECONDS},
    },
    # api: Idempotency-Key records past their lifetime (they are ignored already; this keeps the table small).
    "api-purge-idempotency-records": {
        "task": "api.purge_idempotency_records",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
    # rollouts.drift: compare each site's applied revision with its repository head, a batch per run.
    "rollout-drift-check": {
        "task": "rollouts.drift_check",
        "schedule": env.float("FLEET_DRIFT_INTERVAL", default=60.0),
        "options": {"expires": env.float("FLEET_DRIFT_INTERVAL", default=60.0)},
    },
}

# --- Flower ---------------------------------------------------------------------------------------
FLOWER_USER = env.str("FLEET_FLOWER_USER", default="" if PRODUCTION else "admin")
FLOWER_PASSWORD = env.str("FLEET_FLOWER_PASSWORD", default="" if PRODUCTION else "admin")
FLOWER_PORT = env.int("FLEET_FLOWER_PORT", default=5555)
# Flower keeps every task event it saw in memory; a bound keeps a long-running Flower's memory flat.
FLOWER_MAX_TASKS = env.int("FLEET_FLOWER_MAX_TASKS", default=10000)

# --- Edge and adapters ----------------------------------------------------------------------------
REPO_ROOT = Path(env.str("FLEET_REPO_ROOT", default=str(DATA_DIR / "repos")))
REPO_CACHE_DIR = Path(env.str("FLEET_REPO_CACHE_DIR", default=str(DATA_DIR / "repo-cache")))
# Git servers (sites/repos/); local bare repositories need none of this. An SSH deploy key (with the
# known_hosts file that pins host keys on first contact), or an HTTPS token sent as a Basic-auth header
# from the environment, never in a URL or on a command line. Timeouts bound every git command and the
# wait for a site's working clone (held by another worker).
FLEET_GIT_SSH_KEY_FILE = env.str("FLEET_GIT_SSH_KEY_FILE", default="")
FLEET_GIT_KNOWN_HOSTS_FILE = env.str("FLEET_GIT_KNOWN_HOSTS_FILE", default=str(DATA_DIR / "ssh_known_hosts"))
FLEET_GIT_TOKEN = env.str("FLEET_GIT_TOKEN", default="")
FLEET_GIT_USERNAME = env.str("FLEET_GIT_USERNAME", default="x-access-token")
# The git host that holds the sites' repositories (sites/githost/): `local` (bare repositories under
# FLEET_REPO_ROOT, the embedded default) or `gitlab` (one project per site in FLEET_GITLAB_GROUP, through
# python-gitlab). FLEET_GITLAB_TOKEN may be given as `fernet:<token>` (manage.py encrypt_secret), encrypted
# with FLEET_SECRET_KEYS; it is never logged. FLEET_GIT_CA_FILE: a CA bundle that git and python-gitlab
# trust for the git host (a private CA, the simulator's), never a way to switch verification off.
FLEET_GIT_HOST = env.str("FLEET_GIT_HOST", default="local").strip().lower()
FLEET_GITLAB_URL = env.str("FLEET_GITLAB_URL", default="").strip().rstrip("/")
FLEET_GITLAB_TOKEN = env.str("FLEET_GITLAB_TOKEN", default="").strip()
FLEET_GITLAB_GROUP = env.str("FLEET_GITLAB_GROUP", default="").strip().strip("/")
FLEET_GITLAB_TIMEOUT = env.float("FLEET_GITLAB_TIMEOUT", default=10.0)
FLEET_GITLAB_MAX_RETRIES = env.int("FLEET_GITLAB_MAX_RETRIES", default=2)
FLEET_GITLAB_DEPLOY_TOKEN_DAYS = env.int("FLEET_GITLAB_DEPLOY_TOKEN_DAYS", default=365)
FLEET_GIT_CA_FILE = env.str("FLEET_GIT_CA_FILE", default="").strip()
_gitlab_netloc = ""
git_host_problems = []
if FLEET_GIT_HOST not in ("local", "gitlab"):
    git_host_problems.append(f"FLEET_GIT_HOST must be local or gitlab, not {FLEET_GIT_HOST!r}")
if FLEET_GIT_HOST == "gitlab":
    _gitlab_url = urlsplit(FLEET_GITLAB_URL)
    _gitlab_netloc = (_gitlab_url.netloc or "").lower()
    if _gitlab_url.scheme not in ("https", "http") or not _gitlab_url.hostname or "@" in _gitlab_netloc:
        git_host_problems.append("FLEET_GITLAB_URL must be the git host's https:// address (no user name)")
    elif _gitlab_url.scheme == "http" and (PRODUCTION or _gitlab_url.hostname not in ("127.0.0.1", "localhost", "::1")):
        git_host_problems.append("FLEET_GITLAB_URL must use https:// (plain http only to this machine, in development)")
    if not FLEET_GITLAB_TOKEN:
        git_host_problems.append("FLEET_GIT_HOST is gitlab but FLEET_GITLAB_TOKEN is not set")
    if not FLEET_GITLAB_GROUP:
        git_host_problems.append("FLEET_GIT_HOST is gitlab but FLEET_GITLAB_GROUP is not set")
if FLEET_GIT_CA_FILE and not Path(FLEET_GIT_CA_FILE).is_file():
    git_host_problems.append(f"FLEET_GIT_CA_FILE {FLEET_GIT_CA_FILE!r} is not a file")
if git_host_problems:
    raise ImproperlyConfigured("refusing to start: " + "; ".join(git_host_problems))
# Where site repositories may live (sites/repo_urls.py): the git servers a repo_url may name (host or
# host:port; a bare host means the scheme's default port), the one server the token is sent to (default:
# the first listed), and, outside production only, the directories local bare repositories may live in
# (FLEET_REPO_ROOT always counts). Checked when a repo_url is written and again before every git call.
# With FLEET_GIT_HOST=gitlab the GitLab server is always allowed and receives the token unless told otherwise,
# and the token defaults to FLEET_GITLAB_TOKEN (its `api` scope includes git over HTTPS).
FLEET_GIT_HOSTS = [entry.strip().lower() for entry in env.list("FLEET_GIT_HOSTS", default=[]) if entry.strip()]
if _gitlab_netloc and _gitlab_netloc not in FLEET_GIT_HOSTS:
    FLEET_GIT_HOSTS.append(_gitlab_netloc)
_default_token_host = _gitlab_netloc or (FLEET_GIT_HOSTS[0] if FLEET_GIT_HOSTS else "")
FLEET_GIT_TOKEN_HOST = env.str("FLEET_GIT_TOKEN_HOST", default=_default_token_host)
FLEET_GIT_TOKEN_HOST = FLEET_GIT_TOKEN_HOST.strip().lower()
if FLEET_GIT_HOST == "gitlab" and not FLEET_GIT_TOKEN:
    FLEET_GIT_TOKEN = FLEET_GITLAB_TOKEN
FLEET_GIT_LOCAL_ROOTS = [Path(root).resolve() for root in env.list("FLEET_GIT_LOCAL_ROOTS", default=[str(DATA_DIR)])]
_GIT_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_GIT_HOST_RE = re.compile(rf"^(\[[0-9a-f:.]+\]|{_GIT_LABEL}(\.{_GIT_LABEL})*)(:[0-9]{{1,5}})?$")
git_problems = [
    f"FLEET_GIT_HOSTS entry {entry!r} is not host or host:port"
    for entry in FLEET_GIT_HOSTS
    if not _GIT_HOST_RE.match(entry)
]
if FLEET_GIT_TOKEN_HOST and FLEET_GIT_TOKEN_HOST not in FLEET_GIT_HOSTS:
    git_problems.append(f"FLEET_GIT_TOKEN_HOST {FLEET_GIT_TOKEN_HOST!r} is not one of FLEET_GIT_HOSTS")
if FLEET_GIT_TOKEN and not FLEET_GIT_TOKEN_HOST:
    git_problems.append("FLEET_GIT_TOKEN is set but no host may receive it: set FLEET_GIT_HOSTS")
if PRODUCTION and env.list("FLEET_GIT_LOCAL_ROOTS", default=[]):
    git_problems.append("FLEET_GIT_LOCAL_ROOTS is set, but production never uses local repositories")
if git_problems:
    raise ImproperlyConfigured("refusing to start: " + "; ".join(git_problems))
FLEET_GIT_TIMEOUT = env.float("FLEET_GIT_TIMEOUT", default=30.0)
# Onboarding a site (sites.workflows.onboard) and its base stack (templates/base-stack/<version>/, rendered
# by rollouts.base_stack): where the base stack's Vector agents ship the sites' logs (an http(s) endpoint
# that accepts Vector's `http` sink; empty: logs stay at the edge, Vector drops them), which template
# version new sites get (default: the newest folder), and how often a waiting onboarding looks again at
# the site (its cluster answering, the base stack applied) and at a git host that keeps failing.
FLEET_LOG_SINK = env.str("FLEET_LOG_SINK", default="").strip()
FLEET_BASE_STACK_VERSION = env.str("FLEET_BASE_STACK_VERSION", default="").strip()
FLEET_ONBOARD_POLL_SECONDS = env.float("FLEET_ONBOARD_POLL_SECONDS", default=30.0)
_log_sink = urlsplit(FLEET_LOG_SINK)
if FLEET_LOG_SINK and (_log_sink.scheme not in ("http", "https") or not _log_sink.hostname or "@" in _log_sink.netloc):
    raise ImproperlyConfigured(
        "refusing to start: FLEET_LOG_SINK must be an http(s):// URL with a host and no user name"
    )
if PRODUCTION and FLEET_LOG_SINK and _log_sink.scheme != "https":
    raise ImproperlyConfigured("refusing to start: FLEET_LOG_SINK must use https:// in production")
FLEET_GIT_LOCK_TIMEOUT = env.float("FLEET_GIT_LOCK_TIMEOUT", default=30.0)
KUBE_TIMEOUT_SECONDS = env.float("FLEET_KUBE_TIMEOUT", default=10.0)
# Kubernetes API clients kept per worker process (least recently used dropped): each holds a TLS context
# and a connection pool, so a bound keeps a worker that touched 3000 sites from holding 3000 of them.
KUBE_CLIENT_CACHE_SIZE = env.int("FLEET_KUBE_CLIENT_CACHE_SIZE", default=256)
# How long a registered machine has to become a Ready node before the provisioning gives up on it.
FLEET_JOIN_DEADLINE_SECONDS = env.int("FLEET_JOIN_DEADLINE_SECONDS", default=30 * 60)
# A bootstrap token revokes itself after this many refused registrations (a serial it was not issued for,
# a machine of another site, a MAC that does not match...), and puts at most this many machines in
# quarantine (sites.registration).
FLEET_BOOTSTRAP_MAX_REFUSALS = env.int("FLEET_BOOTSTRAP_MAX_REFUSALS", default=5)
FLEET_BOOTSTRAP_MAX_QUARANTINES = env.int("FLEET_BOOTSTRAP_MAX_QUARANTINES", default=3)
# Node lifecycle workflows (sites.workflows): wall-clock limit of one step against a site, how often a
# waiting step polls the site and a machine's check-in, and how long a drain or a wipe Job may take.
FLEET_NODE_STEP_TIMEOUT = env.float("FLEET_NODE_STEP_TIMEOUT", default=45.0)
FLEET_NODE_POLL_SECONDS = env.float("FLEET_NODE_POLL_SECONDS", default=10.0)
FLEET_NODE_CHECKIN_POLL_SECONDS = env.float("FLEET_NODE_CHECKIN_POLL_SECONDS", default=60.0)
FLEET_NODE_DRAIN_SECONDS = env.float("FLEET_NODE_DRAIN_SECONDS", default=30 * 60.0)
FLEET_NODE_WIPE_SECONDS = env.float("FLEET_NODE_WIPE_SECONDS", default=30 * 60.0)
# Health (sites.health, sites.alerts): a machine in service that has not been ready for this many seconds,
# while its cluster answers, raises a node-down alert on its site (resolved when it is ready again or
# leaves service). The probe notices it, so an alert opens within this plus FLEET_PROBE_INTERVAL.
FLEET_NODE_DOWN_AFTER = env.float("FLEET_NODE_DOWN_AFTER", default=300.0)
if not 0 <= FLEET_NODE_DOWN_AFTER <= 7 * 24 * 3600:
    raise ImproperlyConfigured("FLEET_NODE_DOWN_AFTER must be between 0 and 604800 seconds (a week)")
# Rollouts (rollouts.workflows): the driver's look-again while running and while paused/halted/awaiting
# approval, a site's sync and health polling, and the time limits of a site step and a driver step.
FLEET_ROLLOUT_POLL_SECONDS = env.float("FLEET_ROLLOUT_POLL_SECONDS", default=2.0)
FLEET_ROLLOUT_IDLE_POLL_SECONDS = env.float("FLEET_ROLLOUT_IDLE_POLL_SECONDS", default=30.0)
FLEET_ROLLOUT_SYNC_POLL_SECONDS = env.float("FLEET_ROLLOUT_SYNC_POLL_SECONDS", default=1.0)
FLEET_ROLLOUT_STEP_TIMEOUT = env.float("FLEET_ROLLOUT_STEP_TIMEOUT", default=60.0)
FLEET_ROLLOUT_DRIVE_TIMEOUT = env.float("FLEET_ROLLOUT_DRIVE_TIMEOUT", default=30.0)
# The approval policy (rollouts.approvals): every rollout waits for an approval before its first wave and
# between waves, under the two-person rule, unless its plan was marked low-risk by someone with
# rollouts.mark_low_risk. On in production; off by default elsewhere so the demo and tests run unattended.
FLEET_ROLLOUT_APPROVAL_POLICY = env.bool("FLEET_ROLLOUT_APPROVAL_POLICY", default=PRODUCTION)
# Rendering release templates (rollouts/isolation.py), always in a separate renderer process: per site
# at most FLEET_RENDER_CPU_SECONDS of CPU time, FLEET_RENDER_MEMORY_MB of memory (the process's address
# space) and FLEET_RENDER_TIMEOUT_SECONDS of wall-clock time; one release's check (at creation, at rollout
# start, a dry run) at most FLEET_RENDER_RELEASE_SECONDS in all, which must stay under the web server's
# request timeout (30 s): a rollout start renders every targeted site in its request. A release created
# or changed is rendered for the sample site and FLEET_RENDER_CHECK_SITES real sites. At most
# FLEET_DRY_RUN_MAX_ACTIVE dry runs (rollouts.dry_runs) run at a time, one per plan.
FLEET_RENDER_CPU_SECONDS = env.float("FLEET_RENDER_CPU_SECONDS", default=2.0)
FLEET_RENDER_MEMORY_MB = env.int("FLEET_RENDER_MEMORY_MB", default=512)
FLEET_RENDER_TIMEOUT_SECONDS = env.float("FLEET_RENDER_TIMEOUT_SECONDS", default=5.0)
FLEET_RENDER_RELEASE_SECONDS = env.float("FLEET_RENDER_RELEASE_SECONDS", default=20.0)
FLEET_RENDER_CHECK_SITES = env.int("FLEET_RENDER_CHECK_SITES", default=20)
FLEET_DRY_RUN_MAX_ACTIVE = env.int("FLEET_DRY_RUN_MAX_ACTIVE", default=4)
for _name in ("FLEET_RENDER_CPU_SECONDS", "FLEET_RENDER_TIMEOUT_SECONDS", "FLEET_RENDER_RELEASE_SECONDS"):
    if not 0 < globals()[_name] <= 3600:
        raise ImproperlyConfigured(f"{_name} must be more than 0 and at most 3600 seconds")
if not 64 <= FLEET_RENDER_MEMORY_MB <= 65536:
    raise ImproperlyConfigured("FLEET_RENDER_MEMORY_MB must be between 64 and 65536")
if FLEET_RENDER_CHECK_SITES < 0 or FLEET_DRY_RUN_MAX_ACTIVE < 1:
    raise ImproperlyConfigured("FLEET_RENDER_CHECK_SITES must be 0 or more and FLEET_DRY_RUN_MAX_ACTIVE at least 1")
# How long a pod of a release may wait in CrashLoopBackOff / ImagePullBackOff / ErrImagePull before its
# site fails (rollouts.health): long enough for a registry that blinks, short enough to stop a wave.
FLEET_ROLLOUT_POD_GRACE_SECONDS = env.float("FLEET_ROLLOUT_POD_GRACE_SECONDS", default=60.0)
# Drift check: every FLEET_DRIFT_INTERVAL seconds, the FLEET_DRIFT_BATCH sites checked longest ago.
FLEET_DRIFT_INTERVAL = env.float("FLEET_DRIFT_INTERVAL", default=60.0)
FLEET_DRIFT_BATCH = env.int("FLEET_DRIFT_BATCH", default=500)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("FLEET_LOG_LEVEL", default="INFO")},
    "loggers": {"kubernetes": {"level": "WARNING"}, "urllib3": {"level": "WARNING"}},
}


# --- API secrets: tokens, Idempotency-Key records, throttle cache, metrics -------------------------------
# Integration tokens expire this many days after issue (staff may choose another lifetime in the admin).
FLEET_API_TOKEN_TTL_DAYS = env.int("FLEET_API_TOKEN_TTL_DAYS", default=90)
# How long a POST's Idempotency-Key is remembered; purged hourly by beat.
FLEET_IDEMPOTENCY_HOURS = env.float("FLEET_IDEMPOTENCY_HOURS", default=24.0)
# /metrics answers only `Authorization: Bearer <token>` when set; production refuses to start without it.
METRICS_TOKEN = env.str("FLEET_METRICS_TOKEN", default="")


def _redis_database(url: str, database: int) -> str:
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
            "LOCATION": _redis_database(REDIS_URL, 1),
            "KEY_PREFIX": "edgefleet",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "edgefleet"}}
if CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
    CACHES["default"].setdefault("OPTIONS", {}).update({"socket_connect_timeout": 0.5, "socket_timeout": 0.5})


# --- Production start-up checks ------------------------------------------------------------------------
def _production_problems() -> list[str]:
    """Every reason this configuration is unsafe to serve in production, each naming its variable."""
    problems = []
    if SECRET_KEY == DEFAULT_SECRET_KEY:
        problems.append("FLEET_SECRET_KEY is the development default")
    elif len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or SECRET_KEY.startswith("django-insecure-"):
        problems.append(
            "FLEET_SECRET_KEY is too weak (at least 50 characters, 5 of them different; "
            'generate one: python -c "import secrets; print(secrets.token_urlsafe(50))")'
        )
    if DEBUG:
        problems.append("FLEET_DEBUG is on")
    if not env.list("FLEET_SECRET_KEYS", default=[]):
        problems.append("FLEET_SECRET_KEYS is not set")
    if len(METRICS_TOKEN) < 32:
        problems.append("FLEET_METRICS_TOKEN is not set or shorter than 32 characters")
    if not ALLOWED_HOSTS or "*" in ALLOWED_HOSTS:
        problems.append("FLEET_ALLOWED_HOSTS must name the host names served (not empty, not *)")
    if not SECURE_SSL_REDIRECT:
        problems.append("FLEET_SECURE_SSL_REDIRECT is off")
    if SECURE_HSTS_SECONDS < 86_400:
        problems.append("FLEET_HSTS_SECONDS is under a day (HSTS off or too short)")
    if not SECURE_HSTS_INCLUDE_SUBDOMAINS:
        problems.append("FLEET_HSTS_INCLUDE_SUBDOMAINS is off")
    if not SESSION_COOKIE_SECURE:
        problems.append("FLEET_SECURE_COOKIES is off")
    if "FLEET_TRUSTED_PROXIES" not in env.ENVIRON:
        problems.append("FLEET_TRUSTED_PROXIES is not set (the number of reverse proxies in front; 0 for none)")
    return problems


def _fernet_problems() -> list[str]:
    """A malformed Fernet key refuses the start in any environment, rather than the first decryption."""
    problems = []
    for index, key in enumerate(env.list("FLEET_SECRET_KEYS", default=[]), start=1):
        try:
            Fernet(key.encode())
        except ValueError:
            problems.append(f"FLEET_SECRET_KEYS entry {index} is not a Fernet key (32 url-safe base64-encoded bytes)")
    return problems


_problems = _fernet_problems() + (_production_problems() if PRODUCTION else [])
if _problems:
    raise ImproperlyConfigured(f"refusing to start ({FLEET_ENV}): " + "; ".join(_problems))
