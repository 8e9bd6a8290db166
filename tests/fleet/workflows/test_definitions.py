"""Workflow definitions: validation at registration, and discovery at start-up in every process."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from fleet.workflows.definitions import Step, Workflow, get_workflow, register, workflow_kinds
from fleet.workflows.outcomes import Done


def noop(run: object, ctx: dict[str, object]) -> Done:
    return Done()


def test_builtin_and_test_kinds_are_registered_at_start_up() -> None:
    assert {"noop", "demo.sleepless_wait", "test.block_on_file"} <= set(workflow_kinds())
    noop_kind = get_workflow("noop")
    assert noop_kind is not None and [s.name for s in noop_kind.steps] == [f"noop{n}" for n in range(1, 6)]


def test_a_workflow_needs_steps_with_distinct_names_and_sane_limits() -> None:
    with pytest.raises(ImproperlyConfigured, match="no steps"):
        Workflow(kind="x", steps=[])
    with pytest.raises(ImproperlyConfigured, match="two steps named 'a'"):
        Workflow(kind="x", steps=[Step("a", noop), Step("a", noop)])
    with pytest.raises(ImproperlyConfigured, match="positive timeout"):
        Workflow(kind="x", steps=[Step("a", noop, timeout=0)])


def test_register_refuses_unknown_queues_and_duplicate_kinds() -> None:
    with pytest.raises(ImproperlyConfigured, match="uses queue 'slow'"):
        register(Workflow(kind="unit.queue", steps=[Step("a", noop, queue="slow")]))
    first = register(Workflow(kind="unit.twice", steps=[Step("a", noop)]), replace=True)
    with pytest.raises(ImproperlyConfigured, match="registered twice"):
        register(Workflow(kind="unit.twice", steps=[Step("a", noop)]))
    assert get_workflow("unit.twice") is first
