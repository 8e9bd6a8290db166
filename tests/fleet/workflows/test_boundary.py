"""scripts/check_workflow_boundary.py (`make lint`): no app outside fleet/workflows writes runs, imports the
engine's internals or builds run keys; the allow-list (empty now) reports entries no longer needed."""

import textwrap
from pathlib import Path

import pytest

from tests.support.scripts import load_script
from tests.support.services import ROOT

checker = load_script("check_workflow_boundary")


def tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name in ("__init__", "models", "engine", "selectors", "services"):
        (tmp_path / "fleet/workflows").mkdir(parents=True, exist_ok=True)
        (tmp_path / f"fleet/workflows/{name}.py").write_text("")
    (tmp_path / "fleet/workflows/api").mkdir(exist_ok=True)
    (tmp_path / "fleet/workflows/api/__init__.py").write_text("")
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(textwrap.dedent(text))
    return tmp_path


def test_the_repository_keeps_the_boundary() -> None:
    violations, _stale = checker.check(ROOT)
    assert violations == []


def test_every_kind_of_crossing_is_refused(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "sites/bad.py": """
                from django.db.models.functions import Now
                from fleet.workflows import engine, start
                from fleet.workflows.models import WorkflowRun
                from fleet.workflows.api.serializers import run_shape
                import fleet.workflows.services

                def poke(run, node):
                    WorkflowRun.objects.filter(pk=run.pk).update(state="waiting")
                    Node.objects.filter(pk=node.pk).update(wake_at=Now())
                    run.lease_owner = ""
                    return active_run_for_key(f"node:{node.pk}"), WorkflowRun.objects.filter(subject_type="sites.node")
            """,
            "fleet/workflows/runs.py": "WorkflowRun.objects.filter(pk=1).update(wake_at=None)\n",  # the engine may
            "sites/migrations/0001_x.py": "from fleet.workflows.models import WorkflowRun\n",  # migrations may
        },
    )

    violations, _stale = checker.check(root)

    found = {(v.rule, v.detail) for v in violations}
    assert found == {
        ("import", "fleet.workflows.engine"),
        ("import", "fleet.workflows.models"),
        ("import", "fleet.workflows.services"),
        ("write", "WorkflowRun.update"),
        ("write", "wake_at"),
        ("write", "lease_owner"),
        ("key", "active_run_for_key"),
        ("key", "subject_type"),
    }
    assert {v.path for v in violations} == {"sites/bad.py"}


def test_an_allowed_entry_is_allowed_and_one_no_longer_needed_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tree(
        tmp_path,
        {
            "rollouts/moving.py": """
                from fleet.workflows.services import workflow_start
            """,
        },
    )
    still = ("rollouts/moving.py", "import", "fleet.workflows.services")
    gone = ("rollouts/moving.py", "write", "wake_at")
    monkeypatch.setattr(checker, "ALLOWED", {still: "moves later", gone: "moved already"})

    violations, stale = checker.check(root)

    assert violations == []
    assert stale == [gone]


def test_rollouts_is_on_the_public_api_with_nothing_allowed() -> None:
    assert [entry for entry in checker.ALLOWED if entry[0].startswith("rollouts/")] == []
