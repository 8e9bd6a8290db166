"""Fixtures for the sites tests: a site ready for machines, a clean throttle between tests, and a site's
repository as a bare repository on disk (`bare`, `repo`, `seeded`)."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.cache import cache

from fleet.workflows import dispatch
from rollouts import services as rollout_services
from rollouts.models import Application
from sites import devices, services
from sites.repos import CommitResult, SiteRepo
from tests.factories import SiteFactory
from tests.sites.gitcheck import ANN, make_bare

POS_RESTORE_IMAGE = "registry.example.com/pos/restore:3.2"


def site_admin_form(**fields: str) -> dict[str, str]:
    """The admin's site form with `fields` (code, name, region, timezone...): a planned site with no labels, no
    windows, no repository and no inline cluster or nodes."""
    empty = {"labels": "{}", "business_hours": "[]", "maintenance_windows": "[]", "repo_url": "", "reason": ""}
    inlines = {
        "cluster-TOTAL_FORMS": "0",
        "cluster-INITIAL_FORMS": "0",
        "nodes-TOTAL_FORMS": "0",
        "nodes-INITIAL_FORMS": "0",
    }
    return {**empty, "state": "planned", **inlines, **fields}


@pytest.fixture(autouse=True)
def _clear_throttle_counts() -> Iterator[None]:
    """The throttle counts live in the (process-wide) cache: each test starts from zero."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """No wake-up message leaves this process (the tests that advance runs do it themselves)."""
    monkeypatch.setattr(dispatch, "enqueue_advance", lambda *args, **kwargs: True)


@pytest.fixture
def ready_site(db: None) -> object:
    """A site whose cluster has a K3s join configuration, so machines can register."""
    site = SiteFactory(code="TX-0412")
    services.cluster_set_join_config(
        cluster=site.cluster, actor="test", source="test", server_url="https://10.0.0.1:6443", token="k3s-join-s3cret"
    )
    return site


@pytest.fixture
def site_wide_token(ready_site: object) -> str:
    """A fresh bootstrap token (plaintext) that any machine of `ready_site` may use (`any_serial`)."""
    _token, plaintext = devices.bootstrap_token_issue(site=ready_site, actor="test", source="test", any_serial=True)
    return plaintext


@pytest.fixture
def pos_application(db: None) -> Application:
    """A stateful application with a restore image: what re-hydration restores, and how."""
    return rollout_services.application_create(
        actor="test",
        source="test",
        name="pos",
        team="store",
        namespace="pos",
        stateful=True,
        restore_image=POS_RESTORE_IMAGE,
    )


# --- a site's repository on disk (tests/sites/test_repos*.py) ---------------------------------------


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    return make_bare(tmp_path / "remotes" / "TX-0001.git")


@pytest.fixture
def repo(bare: Path, tmp_path: Path) -> SiteRepo:
    return SiteRepo("TX-0001", str(bare), cache_dir=tmp_path / "cache", timeout=10, lock_timeout=10)


@pytest.fixture
def seeded(repo: SiteRepo) -> CommitResult:
    """The repository after a first write: a kustomization at the root and one owned app directory."""
    return repo.write(
        {"kustomization.yaml": "resources: [apps/pos]\n", "apps/pos/deploy.yaml": "image: pos:1\n"},
        owned_prefix="apps/pos",
        message="Roll out pos 1",
        author=ANN,
    )
