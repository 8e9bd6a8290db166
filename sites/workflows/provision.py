"""`node.provision`: await a pre-registered machine's check-in and its Node Ready; label; verify; active."""

import datetime as dt
from typing import Any

from fleet.workflows import Done, Outcome, Workflow, WorkflowRun, register
from sites.choices import PROVISION_KIND, NodeState
from sites.workflows.common import (
    await_checkin,
    await_ready,
    db_step,
    io_step,
    label_node,
    now,
    site_step,
    subject_node,
    transition,
    verify_node,
)

PROVISION = PROVISION_KIND


@site_step
def provision_await_checkin(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    return await_checkin(run, ctx, subject_node(run))


@site_step
def provision_await_ready(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    return await_ready(run, ctx, subject_node(run))


@site_step
def provision_label(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    return label_node(run, ctx, subject_node(run))


@site_step
def provision_verify(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    return verify_node(run, ctx, subject_node(run))


@site_step
def provision_activate(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    node = subject_node(run)
    transition(run, node, NodeState.ACTIVE, "provisioned: Ready and labelled in the cluster")
    return Done({"activated_at": now().isoformat()})


def provision_failed(run: WorkflowRun) -> None:
    """A provisioning that ends with the machine still joining leaves it `broken`, with the run's error."""
    node = run.get_subject()
    if node is not None and node.state == NodeState.JOINING:
        transition(run, node, NodeState.BROKEN, f"provisioning {run.state}: {run.error}"[:500])


PROVISION_WORKFLOW = register(
    Workflow(
        kind=PROVISION,
        steps=[
            db_step("await_checkin", provision_await_checkin),
            io_step("await_ready", provision_await_ready),
            io_step("label", provision_label),
            io_step("verify", provision_verify),
            db_step("activate", provision_activate),
        ],
        deadline=dt.timedelta(days=14),
        exclusive=True,
        on_fail=provision_failed,
        description="await a pre-registered machine's check-in, its Node Ready; label; verify; active",
    )
)
