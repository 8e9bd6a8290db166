"""Settings: production refuses unsafe defaults; health answers."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]


def _check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**clean, "FLEET_DATA_DIR": "/tmp/edgefleet-settings-test", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_the_default_secret_key_and_debug() -> None:
    result = _check({"FLEET_ENV": "production", "FLEET_DEBUG": "true"})

    assert result.returncode != 0
    assert "FLEET_SECRET_KEY is the development default" in result.stderr
    assert "FLEET_DEBUG is on" in result.stderr
    assert "FLEET_SECRET_KEYS is not set" in result.stderr


def test_production_starts_when_configured() -> None:
    result = _check(
        {
            "FLEET_ENV": "production",
            "FLEET_SECRET_KEY": "a-real-secret-key-for-this-test-only-0123456789",
            "FLEET_SECRET_KEYS": "P2w9bVmM5cC8r8s7Yq0sQ3qL1bQfYpKqZCw0n4m6m5Q=",
            "FLEET_ALLOWED_HOSTS": "fleet.example.com",
        }
    )
    assert result.returncode == 0, result.stderr


def test_unknown_environment_is_refused() -> None:
    result = _check({"FLEET_ENV": "staging"})
    assert result.returncode != 0
    assert "FLEET_ENV must be development, test or production" in result.stderr


@pytest.mark.django_db
def test_healthz_checks_the_database_and_optionally_the_broker(redis_url: str, settings: object) -> None:
    settings.REDIS_URL = redis_url  # type: ignore[attr-defined]
    assert Client().get("/healthz").json() == {"status": "ok", "checks": {"database": "ok"}}
    deep = Client().get("/healthz?deep=1")
    assert deep.status_code == 200
    assert deep.json()["checks"]["broker"] == "ok"


@pytest.mark.django_db
def test_healthz_reports_an_unreachable_broker(settings: object) -> None:
    from tests.services import free_port

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # type: ignore[attr-defined]
    response = Client().get("/healthz?deep=1")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"].startswith("error")
