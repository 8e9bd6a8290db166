"""`node.wipe`: check the site answers, cordon, drain, revoke the machine's credential, run the wipe Job,
await the machine's acknowledgement, delete the Node: `wiped`; then optionally await its rejoin.

An unreachable site is never wiped blindly: the first step waits for it and the run fails "site
unreachable" at its deadline, having changed nothing. docs/ARCHITECTURE.md ("Machines and their
lifecycle") explains the order (revoke before the Job) and where the rejoin token travels.
"""

import datetime as dt
from typing import Any

from django.conf import settings
from django.db import transaction

from fleet.audit.choices import Source
from fleet.workflows import Done, Fail, Outcome, Retry, StepFn, Wait, Workflow, WorkflowRun, register
from sites import devices
from sites.choices import WIPE_KIND, NodeState
from sites.models import BootstrapToken, Node
from sites.workflows.common import (
    ACTION_LABEL,
    NODE_ID_LABEL,
    NodeStep,
    actor_of,
    await_checkin,
    await_ready,
    cluster_of,
    db_step,
    find_node,
    io_step,
    label_node,
    node_name,
    now,
    parse_at,
    poll,
    site_step,
    subject_node,
    transition,
    verify_node,
)

WIPE = WIPE_KIND
WIPE_IMAGE = "edgefleet/wipe:1"
JOB_NAMESPACE = "kube-system"
# The wipe is our own image and must run on the machine whatever is tainted there (it is cordoned and
# drained, maybe NotReady): it tolerates everything.
WIPE_TOLERATIONS: list[dict[str, str]] = [{"operator": "Exists"}]
BOOTSTRAP_TOKEN_ENV = "EDGEFLEET_BOOTSTRAP_TOKEN"  # noqa: S105  # the name of an env var, not a secret


def _preparing(step: NodeStep) -> StepFn:
    """A step that prepares the wipe (check the site, cordon, drain) on the run's node, with the site's errors
    as outcomes; done at once when the wipe already went past draining (a retried step after a crash)."""

    @site_step
    def prepare(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
        node = subject_node(run)
        if node.state in (NodeState.WIPING, NodeState.WIPED) or ctx.get("wipe_job"):
            return Done()
        return step(run, ctx, node)

    return prepare


@_preparing
def wipe_check_site(run: WorkflowRun, ctx: dict[str, Any], node: Node) -> Outcome:
    """Refuse to act unless the site answers: its Node object must be there to run the wipe Job on."""
    found = find_node(cluster_of(node), node)  # ClusterUnavailable -> wait, then "site unreachable"
    if found is None:
        return Fail(f"node {node.hostname} is not in the cluster of site {node.site.code}: nothing to run a wipe on")
    return Done({"k8s_name": found.name, "site_checked_at": now().isoformat()})


@_preparing
def wipe_cordon(run: WorkflowRun, ctx: dict[str, Any], node: Node) -> Outcome:
    name = node_name(ctx, node)
    cluster = cluster_of(node)
    found = cluster.node(name)
    if found is not None and not found.unschedulable:
        cluster.cordon(name)
    if node.state in (NodeState.ACTIVE, NodeState.BROKEN):
        transition(run, node, NodeState.CORDONED, f"cordoned for a wipe: {ctx.get('reason', '')}")
    return Done()


@_preparing
def wipe_drain(run: WorkflowRun, ctx: dict[str, Any], node: Node) -> Outcome:
    name = node_name(ctx, node)
    drain_until = parse_at(ctx.get("drain_until"))
    if drain_until is None:
        drain_until = now() + dt.timedelta(seconds=float(ctx.get("drain_seconds", settings.FLEET_NODE_DRAIN_SECONDS)))
        ctx["drain_until"] = drain_until.isoformat()
    if node.state == NodeState.CORDONED:
        node = transition(run, node, NodeState.DRAINING, "draining for a wipe", deadline=drain_until)
    progress = cluster_of(node).drain(name)
    if progress.done:
        return Done({"drained_at": now().isoformat()})
    if progress.blocked:
        pods = ", ".join(progress.blocked)
        why = "; ".join(sorted(set(progress.reasons.values())))
        if now() >= drain_until:
            reason = f"drain blocked by {pods} past {drain_until:%H:%M:%S} UTC ({why})"
            transition(run, node, NodeState.CORDONED, reason)
            return Fail(f"{reason}; an operator must free them (or relax the budget) and retry the run")
        return Wait(
            min(poll(ctx), max((drain_until - now()).total_seconds(), 0.1)),
            f"{len(progress.blocked)} pod(s) blocked by a PodDisruptionBudget: {pods} ({why}); waiting",
        )
    return Wait(min(poll(ctx), 2.0), f"evicted {len(progress.evicted)} pod(s): {', '.join(progress.evicted)}")


@site_step
def wipe_revoke(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Revoke the machine's credential before the wipe: from here on it cannot speak for the node."""
    node = subject_node(run)
    if node.state in (NodeState.WIPED, NodeState.JOINING, NodeState.ACTIVE):
        return Done()
    with transaction.atomic():
        count = devices.node_credentials_revoke(
            node=node, actor=actor_of(run), source=Source.WORKFLOW, reason=f"wipe: {ctx.get('reason', '')}"
        )
        deadline = now() + dt.timedelta(seconds=float(ctx.get("wipe_seconds", settings.FLEET_NODE_WIPE_SECONDS)))
        transition(run, node, NodeState.WIPING, f"wiping: {ctx.get('reason', '')}", deadline=deadline)
    return Done({"credentials_revoked": count})


def _rejoin_note(run: WorkflowRun) -> str:
    return f"rejoin after wipe run {run.pk}"


def _rejoin_token(run: WorkflowRun, node: Node, ctx: dict[str, Any]) -> str:
    """A fresh single-use bootstrap token for the machine to register with after the wipe. An earlier
    attempt's token that never reached a Job (the worker died in between) is revoked first. The token is
    for this machine only: it travels in a Job spec at the site, readable by whoever can read Jobs there."""
    note = _rejoin_note(run)
    for stale in BootstrapToken.objects.filter(site=node.site, note=note, used_at__isnull=True, revoked_at=None):
        devices.bootstrap_token_revoke(token=stale, actor=actor_of(run), source=Source.WORKFLOW)
    _row, plaintext = devices.bootstrap_token_issue(
        site=node.site, actor=actor_of(run), source=Source.WORKFLOW, note=note, serials=[node.serial]
    )
    return plaintext


@site_step
def wipe_run_job(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Run the wipe Job pinned to the node; it exists at most once (its name is the run's)."""
    node = subject_node(run)
    if node.state != NodeState.WIPING:
        return (
            Done()
            if node.state in (NodeState.WIPED, NodeState.JOINING, NodeState.ACTIVE)
            else Fail(f"node {node.hostname} is {node.state}, not wiping")
        )
    cluster = cluster_of(node)
    name = f"edgefleet-wipe-{run.pk}"
    existing = cluster.job(JOB_NAMESPACE, name)
    if existing is not None:
        if (
            ctx.get("rejoin")
            and not (existing.complete or existing.failed_for_good)
            and not cluster.job_secret_exists(JOB_NAMESPACE, name)
        ):
            # The last attempt died between the Job and its Secret; the pod waits for it, so give it one
            # with a fresh token (_rejoin_token revokes the one that never reached the site).
            cluster.ensure_job_secret(JOB_NAMESPACE, name, {BOOTSTRAP_TOKEN_ENV: _rejoin_token(run, node, ctx)})
        return Done({"wipe_job": name})
    env = {"EDGEFLEET_NODE_ID": str(node.pk), "EDGEFLEET_SERIAL": node.serial}
    # The rejoin token goes in a Secret owned by the Job, never in the Job's spec (clusters.create_job).
    secret_env = {BOOTSTRAP_TOKEN_ENV: _rejoin_token(run, node, ctx)} if ctx.get("rejoin") else None
    created = cluster.create_job(
        namespace=JOB_NAMESPACE,
        name=name,
        node=node_name(ctx, node),
        image=str(ctx.get("wipe_image") or WIPE_IMAGE),
        command=["/wipe", "--factory-reset"],
        env=env,
        secret_env=secret_env,
        labels={ACTION_LABEL: "wipe", NODE_ID_LABEL: str(node.pk)},
        tolerations=WIPE_TOLERATIONS,
    )
    return Done({"wipe_job": name, "wipe_job_created": created})


@site_step
def wipe_await_job(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """The Job completing is the device's acknowledgement that it wipes itself."""
    node = subject_node(run)
    if node.state != NodeState.WIPING:
        return Done()
    name = str(ctx["wipe_job"])
    cluster = cluster_of(node)
    status = cluster.job(JOB_NAMESPACE, name)
    expired = node.state_deadline is not None and now() >= node.state_deadline
    finished = status is not None and (status.complete or status.failed_for_good)
    if ctx.get("rejoin") and (finished or expired):
        # The machine has read its rejoin token (or never will): the Secret's life ends with the Job's.
        cluster.delete_job_secret(JOB_NAMESPACE, name)
    if status is not None and status.complete:
        return Done({"wipe_acknowledged_at": now().isoformat()})
    if status is not None and status.failed_for_good:
        reason = f"wipe job {name} failed: {status.message}"
        transition(run, node, NodeState.BROKEN, reason)
        return Fail(reason)
    if expired:
        reason = f"the machine did not acknowledge the wipe (job {name}) by its deadline"
        transition(run, node, NodeState.BROKEN, reason)
        return Fail(reason)
    if status is None:
        return Retry(f"wipe job {name} is missing at the site")
    return Wait(poll(ctx), f"wipe job {name}: {status.active} active, waiting for the machine to acknowledge")


@site_step
def wipe_delete_node(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    node = subject_node(run)
    if node.state != NodeState.WIPING:
        return Done()
    deleted = cluster_of(node).delete_node(node_name(ctx, node))
    transition(run, node, NodeState.WIPED, f"wiped: {ctx.get('reason', '')}")
    return Done({"node_object_deleted": deleted})


@site_step
def wipe_await_rejoin(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    node = subject_node(run)
    if not ctx.get("rejoin"):
        if ctx.get("retire") and node.state == NodeState.WIPED:
            transition(run, node, NodeState.RETIRED, f"retired after a wipe: {ctx.get('reason', '')}")
        return Done()
    return await_checkin(run, ctx, node)


@site_step
def wipe_await_ready(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    return await_ready(run, ctx, subject_node(run)) if ctx.get("rejoin") else Done()


@site_step
def wipe_label(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    return label_node(run, ctx, subject_node(run)) if ctx.get("rejoin") else Done()


@site_step
def wipe_activate(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    if not ctx.get("rejoin"):
        return Done()
    node = subject_node(run)
    outcome = verify_node(run, ctx, node)
    if not isinstance(outcome, Done):
        return outcome
    transition(run, node, NodeState.ACTIVE, "rejoined after a wipe")
    return Done()


def wipe_failed(run: WorkflowRun) -> None:
    """A drain that ends unfinished gives the node back to operators cordoned; a wipe that ends unfinished
    leaves the machine `broken` (its credential is gone; nobody knows what is left on it)."""
    for token in BootstrapToken.objects.filter(note=_rejoin_note(run), used_at__isnull=True, revoked_at=None):
        # A rejoin that will not happen: its token (in the wipe Job's Secret, if it got that far) dies now.
        devices.bootstrap_token_revoke(token=token, actor=actor_of(run), source=Source.WORKFLOW)
    node = run.get_subject()
    if node is None:
        return
    if node.state == NodeState.DRAINING:
        transition(run, node, NodeState.CORDONED, f"wipe {run.state} while draining: {run.error}"[:500])
    elif node.state == NodeState.WIPING:
        transition(run, node, NodeState.BROKEN, f"wipe {run.state}: {run.error}"[:500])


WIPE_WORKFLOW = register(
    Workflow(
        kind=WIPE,
        steps=[
            io_step("check_site", wipe_check_site),
            io_step("cordon", wipe_cordon),
            io_step("drain", wipe_drain),
            db_step("revoke_credentials", wipe_revoke),
            io_step("run_wipe_job", wipe_run_job),
            io_step("await_wipe", wipe_await_job),
            io_step("delete_node", wipe_delete_node),
            db_step("await_rejoin", wipe_await_rejoin),
            io_step("await_ready", wipe_await_ready),
            io_step("label", wipe_label),
            io_step("activate", wipe_activate),
        ],
        deadline=dt.timedelta(hours=4),
        exclusive=True,
        on_fail=wipe_failed,
        description="cordon, drain, revoke, wipe Job, delete the Node: wiped (then optionally rejoin)",
    )
)
