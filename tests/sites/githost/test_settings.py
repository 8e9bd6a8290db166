"""FLEET_GIT_HOST=gitlab in the settings: what it requires, and what it implies for where git may go."""

import json
import os
import subprocess
import sys

from tests.support.services import ROOT

SHOW = (
    "import json; from django.conf import settings as s; "
    "print(json.dumps([s.FLEET_GIT_HOSTS, s.FLEET_GIT_TOKEN_HOST, s.FLEET_GIT_TOKEN == s.FLEET_GITLAB_TOKEN]))"
)


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, "FLEET_DATA_DIR": "/tmp/edgefleet-githost-settings-test", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_gitlab_needs_its_url_token_and_group() -> None:
    result = _run({"FLEET_GIT_HOST": "gitlab", "FLEET_GITLAB_URL": "ftp://gitlab.example.com"}, "check")
    assert result.returncode != 0
    assert "FLEET_GITLAB_URL must be the git host's https:// address" in result.stderr
    assert "FLEET_GITLAB_TOKEN is not set" in result.stderr
    assert "FLEET_GITLAB_GROUP is not set" in result.stderr

    plain = _run(
        {"FLEET_GIT_HOST": "gitlab", "FLEET_GITLAB_URL": "http://gitlab.example.com", "FLEET_GITLAB_TOKEN": "t",
         "FLEET_GITLAB_GROUP": "fleet"},
        "check",
    )  # fmt: skip
    assert plain.returncode != 0 and "must use https://" in plain.stderr
    assert _run({"FLEET_GIT_HOST": "github"}, "check").returncode != 0


def test_the_gitlab_host_is_allowed_and_receives_the_token() -> None:
    env = {
        "FLEET_GIT_HOST": "gitlab",
        "FLEET_GITLAB_URL": "https://GitLab.example.com:8443/",
        "FLEET_GITLAB_TOKEN": "glpat-x",
        "FLEET_GITLAB_GROUP": "acme/restaurants",
        "FLEET_GIT_HOSTS": "mirror.example.com",
    }
    result = _run(env, "shell", "-c", SHOW)
    assert result.returncode == 0, result.stderr
    hosts, token_host, same_token = json.loads(result.stdout.strip().splitlines()[-1])
    assert hosts == ["mirror.example.com", "gitlab.example.com:8443"]
    assert token_host == "gitlab.example.com:8443"  # not the first listed host: the GitLab one
    assert same_token is True
