"""Flower: always behind basic auth, with its credentials in its environment, never on a command line
(which every user of the machine can read with `ps`)."""

import base64
import secrets
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.flower import basic_auth, flower_argv
from tests.support import free_port, start_process, stop_process, wait_until
from tests.support.services import ROOT


def _status(url: str, credentials: str | None = None) -> int:
    request = urllib.request.Request(url)  # noqa: S310 - a local test URL
    if credentials:
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _command_lines() -> Iterator[tuple[int, bytes]]:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                yield int(proc.name), (proc / "cmdline").read_bytes()
            except OSError:
                continue  # gone meanwhile, or not ours to read


@pytest.mark.integration
def test_flower_requires_its_password_and_no_command_line_shows_it(redis_url: str, tmp_path: Path) -> None:
    password = "pw-" + secrets.token_urlsafe(16)
    port = free_port()
    env = {
        **{k: v for k, v in __import__("os").environ.items() if not k.startswith(("FLEET_", "FLOWER_"))},
        "FLEET_ENV": "test",
        "FLEET_DATA_DIR": str(tmp_path),
        "FLEET_REDIS_URL": redis_url,
        "FLEET_FLOWER_USER": "ops",
        "FLEET_FLOWER_PASSWORD": password,
        "FLEET_FLOWER_PORT": str(port),
    }
    proc = start_process([sys.executable, "-m", "fleet.flower"], log=tmp_path / "flower.log", cwd=ROOT, env=env)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until(lambda: _status(url) != 0, 60, "flower")

        assert _status(url) == 401
        assert _status(url, "ops:wrong") == 401
        assert _status(url, f"ops:{password}") == 200
        leaks = [pid for pid, cmdline in _command_lines() if password.encode() in cmdline]
        assert leaks == [], f"processes with the password on their command line: {leaks}"
        assert b"fleet.flower" in (Path("/proc") / str(proc.pid) / "cmdline").read_bytes()  # we looked at it
    finally:
        stop_process(proc, timeout=30)


def test_flower_refuses_to_run_without_credentials_or_with_ones_it_would_split() -> None:
    with pytest.raises(ValueError, match="never runs without authentication"):
        basic_auth("ops", "")
    with pytest.raises(ValueError, match="may not contain"):
        basic_auth("ops", "a,b")
    with pytest.raises(ValueError, match="may not contain"):
        basic_auth("o:ps", "pw")
    assert basic_auth("ops", "p:w") == "ops:p:w"  # Flower compares the whole "user:password"


def test_no_way_of_starting_flower_here_puts_credentials_on_its_arguments() -> None:
    # Flower's own arguments, as fleet.flower hands them over
    argv = " ".join(flower_argv(port=5555, max_tasks=10000))
    assert "auth" not in argv and "admin" not in argv
    assert "--max-tasks=10000" in argv  # its memory stays bounded however long it runs
    # And every process file of the project starts it through fleet.flower, without credentials
    for name in ("Procfile", "docker-compose.yml", "scripts/devstack.py", "Makefile"):
        text = (ROOT / name).read_text()
        for line in text.splitlines():
            if "flower" in line.lower() and ("celery" in line or "command" in line or "-m fleet.flower" in line):
                assert "basic" not in line.lower() and "PASSWORD" not in line, f"{name}: {line}"
