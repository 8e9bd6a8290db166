"""Helpers shared by the git host tests and the onboarding tests (no tests here): the control plane pointed at
the simulator's git host, an adapter built straight from it, project codes no simulated site has, and plain git."""

import os
import subprocess
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from simulator.testing import Simulator
from sites.githost.gitlab import GitLabHost


def use_simulated_gitlab(settings: Any, sim: Simulator) -> Any:
    """FLEET_GIT_HOST=gitlab pointed at the simulator's git host, as .env.example documents it."""
    netloc = urlsplit(sim.gitlab_url).netloc
    settings.FLEET_GIT_HOST = "gitlab"
    settings.FLEET_GITLAB_URL = sim.gitlab_url
    settings.FLEET_GITLAB_TOKEN = sim.gitlab_token
    settings.FLEET_GITLAB_GROUP = sim.git_group
    settings.FLEET_GIT_CA_FILE = str(sim.ca_cert)
    settings.FLEET_GIT_HOSTS = [netloc]
    settings.FLEET_GIT_TOKEN_HOST = netloc
    settings.FLEET_GIT_TOKEN = sim.gitlab_token
    return settings


def gitlab_host(sim: Simulator, **overrides: Any) -> GitLabHost:
    """The adapter for the simulator's git host, built directly (one retry, five-second calls) unless overridden."""
    options: dict[str, Any] = {
        "url": sim.gitlab_url,
        "token": sim.gitlab_token,
        "group": sim.git_group,
        "ca_file": str(sim.ca_cert),
        "timeout": 5.0,
        "max_retries": 1,
    }
    options.update(overrides)
    return GitLabHost(**options)


def unused_code() -> str:
    """A code for a project that is no simulated site's (sites' codes are two capitals and four digits)."""
    return f"ZZ-{uuid.uuid4().int % 1_000_000:06d}"


def git(*args: str, cwd: Path | None = None, ca: Path | None = None, extra: dict[str, str] | None = None) -> Any:
    """Plain git, with none of this machine's git configuration and, for https, the simulator's CA."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        **({"GIT_SSL_CAINFO": str(ca)} if ca else {}),
        **(extra or {}),
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)


def with_credentials(url: str, user: str, password: str) -> str:
    return url.replace("https://", f"https://{user}:{password}@", 1)
