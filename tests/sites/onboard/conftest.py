"""Fixtures for the onboarding tests: one simulator per module, advanced by the engine in this process with
short polls, and the control plane's git host pointed at the simulator's (`local_host` or `gitlab_host`)."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.workflows import dispatch
from simulator.testing import Simulator, running_simulator
from sites.githost import _git_host
from tests.sites.githost.support import use_simulated_gitlab
from tests.sites.test_lifecycle_support import FAST_SIM


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    state_dir = tmp_path_factory.mktemp("onboard-sim")
    with running_simulator(sites=2, state_dir=state_dir, sync_interval=0.3, extra_args=FAST_SIM) as running:
        yield running


@pytest.fixture
def quiet(db: None, settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """No wake-up messages (this process advances the runs), short polls, a private working-clone cache."""
    monkeypatch.setattr(dispatch, "enqueue_advance", lambda *args, **kwargs: True)
    settings.FLEET_ONBOARD_POLL_SECONDS = 0.2
    settings.KUBE_TIMEOUT_SECONDS = 3.0
    settings.REPO_CACHE_DIR = tmp_path / "repo-cache"
    _git_host.cache_clear()
    yield settings
    _git_host.cache_clear()


@pytest.fixture
def local_host(sim: Simulator, quiet: Any) -> Any:
    """FLEET_GIT_HOST=local over the simulator's repositories, as `make dev` sets FLEET_REPO_ROOT."""
    quiet.FLEET_GIT_HOST = "local"
    quiet.REPO_ROOT = sim.state_dir / "repos"
    return quiet


@pytest.fixture
def gitlab_host(sim: Simulator, quiet: Any) -> Any:
    """FLEET_GIT_HOST=gitlab pointed at the simulator's git host, failing fast (no retries, one-second calls)."""
    use_simulated_gitlab(quiet, sim)
    quiet.FLEET_GITLAB_MAX_RETRIES = 0
    quiet.FLEET_GITLAB_TIMEOUT = 1.0
    yield quiet
    sim.clear_faults()
