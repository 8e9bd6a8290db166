"""What the node workflows share: the site's errors as outcomes (`site_step`), the helpers every step
uses, the steps provisioning, wipe and replacement have in common (check-in, Ready, labels, verify),
and how their steps are declared (`io_step`, `db_step`, `on_node`, `joining_steps`)."""

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from fleet.audit.choices import Source
from fleet.errors import FleetError
from fleet.workflows import (
    Done,
    Fail,
    Outcome,
    Retry,
    Step,
    StepFn,
    Stop,
    Wait,
    WorkflowRun,
    errors_as_outcomes,
    subject_or_stop,
)
from sites import services
from sites.choices import NodeState
from sites.clusters import (
    ClusterError,
    ClusterNotConfigured,
    ClusterRefused,
    ClusterUnavailable,
    NodeInfo,
    SiteCluster,
)
from sites.models import Node

ACTION_LABEL = "edgefleet.io/action"
NODE_ID_LABEL = "edgefleet.io/node-id"


# --- helpers ----------------------------------------------------------------------------------------


def actor_of(run: WorkflowRun) -> str:
    """The audit actor of a step: the run, and who started it."""
    who = f" for {run.created_by_repr}" if run.created_by_repr else ""
    return f"workflow:{run.kind}#{run.pk}{who}"[:150]


def now() -> dt.datetime:
    return timezone.now()


def poll(ctx: dict[str, Any]) -> float:
    return float(ctx.get("poll", settings.FLEET_NODE_POLL_SECONDS))


def parse_at(value: Any) -> dt.datetime | None:
    return parse_datetime(value) if isinstance(value, str) and value else None


def subject_node(run: WorkflowRun) -> Node:
    return subject_or_stop(run, Node.objects.select_related("site__cluster"))


def replacement_node(ctx: dict[str, Any]) -> Node:
    node = Node.objects.select_related("site__cluster").filter(pk=int(ctx.get("replacement_node_id") or 0)).first()
    if node is None:
        raise Stop(Fail("the replacement node record is gone"))
    return node


def the_subject(run: WorkflowRun, ctx: dict[str, Any]) -> Node:
    """The run's own machine, for `on_node`."""
    return subject_node(run)


def the_replacement(run: WorkflowRun, ctx: dict[str, Any]) -> Node:
    """The replacement machine `node.replace` recorded, for `on_node`."""
    return replacement_node(ctx)


def node_name(ctx: dict[str, Any], node: Node) -> str:
    """The name of the machine's Node object: the one a step found in the cluster (`k8s_name`), else its
    hostname."""
    return str(ctx.get("k8s_name") or node.hostname)


def cluster_of(node: Node) -> SiteCluster:
    return SiteCluster.for_cluster(node.site.cluster)


def transition(run: WorkflowRun, node: Node, to: str, reason: str, deadline: dt.datetime | None = None) -> Node:
    if node.state == to:
        return node
    return services.node_transition(
        node=node, to=to, actor=actor_of(run), source=Source.WORKFLOW, reason=reason, deadline=deadline
    )


def _site_unavailable(run: WorkflowRun, ctx: dict[str, Any], exc: ClusterUnavailable) -> Outcome:
    if exc.status in (409, 429):
        return Retry(f"site busy: {exc}", after=exc.retry_after)
    return unreachable(run, ctx, exc)


def _site_refused(run: WorkflowRun, ctx: dict[str, Any], exc: ClusterError) -> Outcome:
    return Fail(f"the site refused: {exc}")


# The site's answers as outcomes, for every step of the node workflows: a site that does not answer is
# a Wait (it may be offline for hours; the run's deadline bounds it), a busy one a Retry after what it
# asked, a refusal or a missing configuration fails the run, and so does a node state change the
# transition table refuses (someone moved the node meanwhile: FleetError).
site_step = errors_as_outcomes(
    {
        ClusterUnavailable: _site_unavailable,
        (ClusterRefused, ClusterNotConfigured): _site_refused,
        ClusterError: Retry,
        FleetError: Fail,
    }
)


def unreachable(run: WorkflowRun, ctx: dict[str, Any], exc: Exception) -> Outcome:
    """Wait for the site; fail with "site unreachable" when the next look would be past the deadline."""
    wait = poll(ctx)
    if run.deadline is not None and now() + dt.timedelta(seconds=wait) >= run.deadline:
        return Fail(f"site unreachable until the run's deadline: {exc}; nothing was changed at the site")
    return Wait(wait, f"site unreachable ({exc}); waiting")


def find_node(cluster: SiteCluster, node: Node) -> NodeInfo | None:
    """The machine's Node object: by hostname, else by the serial label the agent sets."""
    found = cluster.node(node.hostname)
    if found is not None:
        return found
    labelled = cluster.nodes(label_selector=f"edgefleet.io/serial={node.serial}")
    return labelled[0] if labelled else None


def node_labels(node: Node) -> dict[str, str]:
    """The labels edgefleet puts on a machine's Node object (rollouts target them)."""
    return {
        "edgefleet.io/role": node.role,
        "edgefleet.io/serial": node.serial,
        "edgefleet.io/site": node.site.code,
        "edgefleet.io/region": node.site.region,
        NODE_ID_LABEL: str(node.pk),
    }


def slug(text: str) -> str:
    """`text` as a short piece of a Kubernetes name."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:30] or "app"


# --- steps shared by the workflows: check-in, Ready, labels, verify --------------------------------

NodeStep = Callable[[WorkflowRun, dict[str, Any], Node], Outcome]
NodeOf = Callable[[WorkflowRun, dict[str, Any]], Node]


def on_node(step: NodeStep, node_of: NodeOf) -> StepFn:
    """One of the shared steps below as a workflow's step, on the machine `node_of` names
    (`the_subject`, `the_replacement`), with the site's errors as outcomes."""

    @site_step
    def node_step(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
        return step(run, ctx, node_of(run, ctx))

    return node_step


def await_checkin(run: WorkflowRun, ctx: dict[str, Any], node: Node) -> Outcome:
    """Done once the machine registered (joining or active); Wait while it has not; Fail otherwise."""
    if node.state in (NodeState.JOINING, NodeState.ACTIVE):
        return Done({"checked_in_at": now().isoformat()})
    if node.state in (NodeState.PREREGISTERED, NodeState.WIPED):
        wait = float(ctx.get("checkin_poll", settings.FLEET_NODE_CHECKIN_POLL_SECONDS))
        return Wait(wait, f"waiting for machine {node.serial} to check in at {node.site.code} (node is {node.state})")
    reason = f" ({node.state_reason})" if node.state_reason else ""
    return Fail(f"machine {node.serial} is {node.state}{reason}; it will not join as {node.hostname}")


def await_ready(run: WorkflowRun, ctx: dict[str, Any], node: Node) -> Outcome:
    """Done once the machine's Node is Ready; past the node's joining deadline it becomes `broken`."""
    if node.state == NodeState.ACTIVE:
        return Done()
    if node.state != NodeState.JOINING:
        return Fail(f"node {node.hostname} is {node.state}, not joining")
    try:
        found = find_node(cluster_of(node), node)
    except ClusterUnavailable as exc:
        found, problem = None, f"site unreachable ({exc})"
    else:
        if found is not None and found.ready is True:
            return Done({"k8s_name": found.name})
        problem = "no Node object yet" if found is None else f"Node {found.name} is not Ready"
    if node.state_deadline is not None and now() >= node.state_deadline:
        reason = (
            f"did not become a Ready node by its joining deadline {node.state_deadline:%Y-%m-%d %H:%M} UTC: {problem}"
        )
        transition(run, node, NodeState.BROKEN, reason)
        return Fail(f"node {node.hostname} {reason}")
    return Wait(poll(ctx), f"waiting for {node.hostname} to join the cluster: {problem}")


def label_node(run: WorkflowRun, ctx: dict[str, Any], node: Node) -> Outcome:
    """Put edgefleet's labels on the Node (only the missing ones)."""
    cluster = cluster_of(node)
    name = node_name(ctx, node)
    found = cluster.node(name)
    if found is None:
        return Retry(f"Node {name} disappeared before it was labelled")
    wanted = node_labels(node)
    missing = {k: v for k, v in wanted.items() if found.labels.get(k) != v}
    if missing:
        cluster.label_node(name, dict(missing))
    return Done({"labelled": sorted(wanted)})


def verify_node(run: WorkflowRun, ctx: dict[str, Any], node: Node) -> Outcome:
    """Done when the Node is Ready, schedulable and carries every label."""
    cluster = cluster_of(node)
    name = node_name(ctx, node)
    found = cluster.node(name)
    if found is None or found.ready is not True:
        return Wait(poll(ctx), f"Node {name} is not Ready yet")
    if found.unschedulable:
        cluster.uncordon(name)
    missing = [k for k, v in node_labels(node).items() if found.labels.get(k) != v]
    if missing:
        return Retry(f"labels missing on {name}: {', '.join(missing)}")
    return Done()


# --- declaring steps --------------------------------------------------------------------------------


def step_timeout() -> float:
    # Read at registration time, in every process (the tests' worker sets it short).
    return float(settings.FLEET_NODE_STEP_TIMEOUT)


def io_step(name: str, fn: StepFn, **limits: Any) -> Step:
    """A step that talks to the site: on the `io` queue, with more attempts and a shorter backoff cap."""
    limits.setdefault("timeout", step_timeout())
    limits.setdefault("max_attempts", 8)
    return Step(name, fn, queue="io", retry_cap=60.0, **limits)


def db_step(name: str, fn: StepFn) -> Step:
    """A step that only reads and writes the database."""
    return Step(name, fn, timeout=step_timeout(), max_attempts=5)


def joining_steps(node_of: NodeOf) -> list[Step]:
    """A machine joining its site's cluster (a provisioned one, a replacement): its check-in, its Node
    Ready, edgefleet's labels on it."""
    return [
        db_step("await_checkin", on_node(await_checkin, node_of)),
        io_step("await_ready", on_node(await_ready, node_of)),
        io_step("label", on_node(label_node, node_of)),
    ]
