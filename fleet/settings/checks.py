"""The start-up checks that need the whole configuration: a malformed Fernet key refuses the start in any
environment, and production refuses anything unsafe (weak or default secret key, DEBUG, no metrics
token, no allowed hosts, HTTPS turned off, an undeclared proxy count), every reason named at once."""

from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from fleet.settings.base import ALLOWED_HOSTS, DEBUG, DEFAULT_SECRET_KEY, FLEET_ENV, PRODUCTION, SECRET_KEY, env
from fleet.settings.web import (
    METRICS_TOKEN,
    SECURE_HSTS_INCLUDE_SUBDOMAINS,
    SECURE_HSTS_SECONDS,
    SECURE_SSL_REDIRECT,
    SESSION_COOKIE_SECURE,
)


def production_problems() -> list[str]:
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


def fernet_problems() -> list[str]:
    """A malformed Fernet key refuses the start in any environment, rather than the first decryption."""
    problems = []
    for index, key in enumerate(env.list("FLEET_SECRET_KEYS", default=[]), start=1):
        try:
            Fernet(key.encode())
        except ValueError:
            problems.append(f"FLEET_SECRET_KEYS entry {index} is not a Fernet key (32 url-safe base64-encoded bytes)")
    return problems


def refuse_unsafe() -> None:
    """Raise ImproperlyConfigured with every problem found, or return."""
    problems = fernet_problems() + (production_problems() if PRODUCTION else [])
    if problems:
        raise ImproperlyConfigured(f"refusing to start ({FLEET_ENV}): " + "; ".join(problems))
