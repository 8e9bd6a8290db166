"""Fixtures for the git host adapter tests: one simulator per module and the control plane's settings
pointed at its git host."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulator.testing import Simulator, running_simulator
from tests.sites.githost.support import use_simulated_gitlab


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    with running_simulator(sites=3, state_dir=tmp_path_factory.mktemp("githost-sim"), sync_interval=0.3) as simulator:
        yield simulator


@pytest.fixture
def gitlab_settings(sim: Simulator, settings: Any, tmp_path: Path) -> Any:
    """FLEET_GIT_HOST=gitlab, pointed at the simulator's git host, with one retry and a private clone cache."""
    use_simulated_gitlab(settings, sim)
    settings.FLEET_GITLAB_MAX_RETRIES = 1
    settings.REPO_CACHE_DIR = tmp_path / "repo-cache"
    return settings
