"""The core of the settings: the environment (`env`, FLEET_ENV, PRODUCTION), the secret keys, the data
directory, the installed apps and middleware, the database, static files and logging."""

import base64
import hashlib
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent

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


def development_fernet_key(secret: str) -> str:
    """A stable Fernet key derived from the secret key, good enough for a laptop and never for production."""
    return base64.urlsafe_b64encode(hashlib.sha256(("fernet:" + secret).encode()).digest()).decode()


# Fernet keys for credentials at rest: the first encrypts, all of them decrypt, so a new key can be put
# first and `manage.py rotate_secrets` re-encrypts everything before the old key is removed.
FLEET_SECRET_KEYS = env.list("FLEET_SECRET_KEYS", default=[]) or [development_fernet_key(SECRET_KEY)]

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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("FLEET_LOG_LEVEL", default="INFO")},
    "loggers": {"kubernetes": {"level": "WARNING"}, "urllib3": {"level": "WARNING"}},
}


REDIS_URL = env.str("FLEET_REDIS_URL", default="redis://127.0.0.1:6379/0")
