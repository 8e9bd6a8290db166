"""`node.provision`: await a pre-registered machine's check-in and its Node Ready; label; verify; active."""

import datetime as dt
from typing import Any

from fleet.workflows import Done, Outcome, Workflow, WorkflowRun, register
from sites.choices import PROVISION_KIND, NodeState
from sites.workflows.common import (
    db_step,
    io_step,
    joining_steps,
    now,
    on_node,
    site_step,
    subject_node,
    the_subject,
    transition,
    verify_node,
)

PROVISION = PROVISION_KIND


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
            *joining_steps(the_subject),
            io_step("verify", on_node(verify_node, the_subject)),
            db_step("activate", provision_activate),
        ],
        deadline=dt.timedelta(days=14),
        exclusive=True,
        on_fail=provision_failed,
        description="await a pre-registered machine's check-in, its Node Ready; label; verify; active",
    )
)
