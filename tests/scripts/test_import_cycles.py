"""scripts/check_import_cycles.py (`make lint`): no import circle between the modules of the Django apps,
lazy imports included; the allow-list reports entries no longer needed."""

import textwrap
from pathlib import Path

import pytest

from tests.support.scripts import load_script
from tests.support.services import ROOT

checker = load_script("check_import_cycles")


def tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for app in checker.APPS:
        (tmp_path / app).mkdir(parents=True, exist_ok=True)
        (tmp_path / app / "__init__.py").touch()
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(textwrap.dedent(text))
    return tmp_path


@pytest.fixture
def nothing_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checker, "ALLOWED", {})


def test_the_repository_has_no_circle_but_those_allowed() -> None:
    _edges, found, stale = checker.check(ROOT)

    assert found == []
    assert stale == []


def test_the_rollouts_services_and_workflows_no_longer_need_each_other() -> None:
    edges, _found, _stale = checker.check(ROOT)

    services = {name for name in edges if name == "rollouts.services" or name.startswith("rollouts.services.")}
    assert not any(target.startswith("rollouts.workflows") for name in services for target in edges[name])


def test_a_lazy_import_in_a_function_still_closes_a_circle(tmp_path: Path, nothing_allowed: None) -> None:
    root = tree(
        tmp_path,
        {
            "rollouts/services.py": """
                def wake(rollout):
                    from rollouts.workflows import rollout_wake  # the workflows import this module
                    rollout_wake(rollout)
            """,
            "rollouts/workflows.py": "from rollouts import services\n",
        },
    )

    _edges, found, _stale = checker.check(root)

    assert found == [["rollouts.services", "rollouts.workflows"]]


def test_a_package_may_re_export_its_modules_but_not_be_imported_back_by_them(
    tmp_path: Path, nothing_allowed: None
) -> None:
    files = {
        "rollouts/services/__init__.py": "from rollouts.services.plans import plan_create\n",
        "rollouts/services/plans.py": "from .actors import user_of\n",
        "rollouts/services/actors.py": "def user_of(actor): ...\n",
        "rollouts/services/rollouts.py": "from rollouts.services.plans import plan_create\n",
    }
    _edges, clean, _stale = checker.check(tree(tmp_path / "clean", files))
    files["rollouts/services/actors.py"] = "from rollouts.services import plan_create\n"
    _edges, circular, _stale = checker.check(tree(tmp_path / "circular", files))

    assert clean == []
    assert circular == [["rollouts.services", "rollouts.services.actors", "rollouts.services.plans"]]


def test_importing_a_module_runs_its_package_and_that_counts(tmp_path: Path, nothing_allowed: None) -> None:
    root = tree(
        tmp_path,
        {
            "sites/clusters.py": "from rollouts.services.plans import plan_create\n",
            "rollouts/services/__init__.py": "from sites import clusters\n",
            "rollouts/services/plans.py": "def plan_create(): ...\n",
        },
    )

    _edges, found, _stale = checker.check(root)

    assert found == [["rollouts.services", "sites.clusters"]]


def test_imports_for_type_checking_only_do_not_count(tmp_path: Path, nothing_allowed: None) -> None:
    root = tree(
        tmp_path,
        {
            "fleet/workflows/__init__.py": """
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from fleet.workflows.models import WorkflowRun
                else:
                    WorkflowRun = None
            """,
            "fleet/workflows/models.py": "from fleet.workflows import choices\n",
            "fleet/workflows/choices.py": "import fleet.workflows\n",
        },
    )

    _edges, found, _stale = checker.check(root)

    assert found == []


def test_an_allowed_circle_is_allowed_exactly_and_one_no_longer_found_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tree(
        tmp_path,
        {
            "sites/services.py": "def probe():\n    from sites.tasks import probe_task\n",
            "sites/tasks.py": "from sites import services\n",
            "sites/selectors.py": "from sites import tasks\n",
        },
    )
    allowed = frozenset({"sites.services", "sites.tasks"})
    gone = frozenset({"rollouts.a", "rollouts.b"})
    monkeypatch.setattr(checker, "ALLOWED", {allowed: "owned elsewhere", gone: "fixed already"})

    _edges, found, stale = checker.check(root)
    (root / "sites/tasks.py").write_text("from sites import selectors, services\n")
    _edges, grown, _stale = checker.check(root)

    assert found == []
    assert stale == [gone]
    assert grown == [["sites.selectors", "sites.services", "sites.tasks"]]
