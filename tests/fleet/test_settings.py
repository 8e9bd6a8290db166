"""Settings: production refuses unsafe values, each named, and passes `check --deploy` as documented; health answers."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from tests.support.services import PRODUCTION_ENV

ROOT = Path(__file__).resolve().parents[2]


def _check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    return subprocess.run(
        [sys.executable, "manage.py", "check", *args],
        cwd=ROOT,
        env={**clean, "FLEET_DATA_DIR": "/tmp/edgefleet-settings-test", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION = PRODUCTION_ENV


def test_the_production_variables_are_documented_in_env_example() -> None:
    documented = (ROOT / ".env.example").read_text()
    for name in PRODUCTION:
        assert f"# {name}=" in documented or f"{name}=" in documented, name


@pytest.mark.integration
def test_production_passes_the_deploy_check_with_the_documented_settings() -> None:
    result = _check(PRODUCTION, "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues (0 silenced)" in result.stdout
    assert "WARNING" not in result.stderr


@pytest.mark.integration
def test_production_refuses_every_default_at_once() -> None:
    result = _check({"FLEET_ENV": "production", "FLEET_DEBUG": "true"})

    assert result.returncode != 0
    for reason in (
        "FLEET_SECRET_KEY is the development default",
        "FLEET_DEBUG is on",
        "FLEET_SECRET_KEYS is not set",
        "FLEET_METRICS_TOKEN is not set",
        "FLEET_ALLOWED_HOSTS must name the host names",
        "FLEET_TRUSTED_PROXIES is not set",
    ):
        assert reason in result.stderr


@pytest.mark.integration
@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"FLEET_SECRET_KEY": "a-real-secret-key-for-this-test-only-0123456789"}, "FLEET_SECRET_KEY is too weak"),
        ({"FLEET_SECRET_KEY": "ab" * 40}, "FLEET_SECRET_KEY is too weak"),
        ({"FLEET_SECRET_KEYS": "P2w9bVmM5cC8r8s7Yq0sQ3qL1bQfYpKqZCw0n4m6m5Q=,not-a-key"}, "FLEET_SECRET_KEYS entry 2"),
        ({"FLEET_METRICS_TOKEN": ""}, "FLEET_METRICS_TOKEN is not set"),
        ({"FLEET_METRICS_TOKEN": "short"}, "FLEET_METRICS_TOKEN is not set or shorter"),
        ({"FLEET_ALLOWED_HOSTS": "*"}, "FLEET_ALLOWED_HOSTS must name the host names"),
        ({"FLEET_SECURE_SSL_REDIRECT": "false"}, "FLEET_SECURE_SSL_REDIRECT is off"),
        ({"FLEET_HSTS_SECONDS": "0"}, "FLEET_HSTS_SECONDS is under a day"),
        ({"FLEET_HSTS_INCLUDE_SUBDOMAINS": "false"}, "FLEET_HSTS_INCLUDE_SUBDOMAINS is off"),
        ({"FLEET_SECURE_COOKIES": "false"}, "FLEET_SECURE_COOKIES is off"),
    ],
    ids=[
        "short-key", "low-entropy-key", "bad-fernet", "no-metrics-token", "short-metrics-token", "any-host",
        "no-redirect", "no-hsts", "hsts-no-subdomains", "insecure-cookies",
    ],
)  # fmt: skip
def test_production_refuses_each_unsafe_value(change: dict[str, str], reason: str) -> None:
    result = _check({**PRODUCTION, **change})

    assert result.returncode != 0
    assert "refusing to start (production)" in result.stderr
    assert reason in result.stderr
    assert change.get("FLEET_SECRET_KEY", "\0") not in result.stderr  # a refusal never prints a secret


@pytest.mark.integration
def test_a_malformed_fernet_key_refuses_the_start_in_development_too() -> None:
    result = _check({"FLEET_ENV": "development", "FLEET_SECRET_KEYS": "too-short"})

    assert result.returncode != 0
    assert "FLEET_SECRET_KEYS entry 1 is not a Fernet key" in result.stderr
    assert "too-short" not in result.stderr


@pytest.mark.integration
def test_unknown_environment_is_refused() -> None:
    result = _check({"FLEET_ENV": "staging"})
    assert result.returncode != 0
    assert "FLEET_ENV must be development, test or production" in result.stderr


@pytest.mark.django_db
@pytest.mark.integration
def test_healthz_checks_the_database_and_optionally_the_broker(redis_url: str, settings: object) -> None:
    settings.REDIS_URL = redis_url  # type: ignore[attr-defined]
    assert Client().get("/healthz").json() == {"status": "ok", "checks": {"database": "ok"}}
    deep = Client().get("/healthz?deep=1")
    assert deep.status_code == 200
    assert deep.json()["checks"]["broker"] == "ok"


@pytest.mark.django_db
def test_healthz_reports_an_unreachable_broker(settings: object) -> None:
    from tests.support import free_port

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # type: ignore[attr-defined]
    response = Client().get("/healthz?deep=1")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"].startswith("error")
