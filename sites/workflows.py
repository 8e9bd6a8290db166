"""The machine lifecycle workflows: `node.provision`, `node.wipe` and `node.replace` (throw-away).

Each is exclusive per node (the run's subject), so "wipe this node" while it is being provisioned is
refused with a 409 naming the running workflow. Every step checks the world before acting ("already
cordoned? done"), talks to the site on the `io` queue, and leaves a readable message in the run's
timeline. Timings (polls, drain and wipe deadlines) travel in the run's context, set by the doors in
sites.lifecycle from settings, so the worker that runs a step uses what the request asked for.

Failure states follow the node state machine: a node that does not become Ready by its joining deadline
becomes `broken`; a drain blocked past its deadline sends the node back to `cordoned` for an operator; a
wipe the machine never acknowledges leaves it `broken`. An unreachable site is never wiped blindly: the
run waits and fails with "site unreachable" at its deadline, having destroyed nothing.
"""

import datetime as dt
import functools
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from fleet.audit.services import audit_record
from fleet.errors import FleetError
from fleet.workflows.definitions import Step, Workflow, register
from fleet.workflows.models import WorkflowRun
from fleet.workflows.outcomes import Done, Fail, Outcome, Retry, Wait
from sites import devices, rehydration, selectors, services
from sites.choices import NodeState
from sites.clusters import (
    ClusterError,
    ClusterNotConfigured,
    ClusterRefused,
    ClusterUnavailable,
    NodeInfo,
    SiteCluster,
)
from sites.models import BootstrapToken, Node, NodeCredential

PROVISION = "node.provision"
WIPE = "node.wipe"
REPLACE = "node.replace"

WIPE_IMAGE = "edgefleet/wipe:1"
JOB_NAMESPACE = "kube-system"
# The wipe is our own image and must run on the machine whatever is tainted there (it is cordoned and
# drained, maybe NotReady): it tolerates everything. A restore Job runs an application team's image on a
# fresh, Ready, untainted replacement, pinned by nodeName: it needs no toleration, so it gets none.
WIPE_TOLERATIONS: list[dict[str, str]] = [{"operator": "Exists"}]
RESTORE_TOLERATIONS: list[dict[str, str]] = []
ACTION_LABEL = "edgefleet.io/action"
NODE_ID_LABEL = "edgefleet.io/node-id"
OUT_OF_SERVICE_TAINT = "node.kubernetes.io/out-of-service"
BOOTSTRAP_TOKEN_ENV = "EDGEFLEET_BOOTSTRAP_TOKEN"  # noqa: S105  # the name of an env var, not a secret


def _step_timeout() -> float:
    # Read at registration time, in every process (the tests' worker sets it short).
    return float(settings.FLEET_NODE_STEP_TIMEOUT)


# --- helpers ----------------------------------------------------------------------------------------


def actor_of(run: WorkflowRun) -> str:
    """The audit actor of a step: the run, and who started it."""
    who = f" for {run.created_by_repr}" if run.created_by_repr else ""
    return f"workflow:{run.kind}#{run.pk}{who}"[:150]


def _now() -> dt.datetime:
    return timezone.now()


def _poll(ctx: dict[str, Any]) -> float:
    return float(ctx.get("poll", settings.FLEET_NODE_POLL_SECONDS))


def _at(value: Any) -> dt.datetime | None:
    return parse_datetime(value) if isinstance(value, str) and value else None


def _subject(run: WorkflowRun) -> Node:
    node = run.get_subject()
    if node is None:
        raise _Stop(Fail(f"node {run.subject_repr or run.subject_id} no longer exists"))
    assert isinstance(node, Node)  # noqa: S101  # narrowing for mypy
    return Node.objects.select_related("site__cluster").get(pk=node.pk)


def _replacement(ctx: dict[str, Any]) -> Node:
    node = Node.objects.select_related("site__cluster").filter(pk=int(ctx.get("replacement_node_id") or 0)).first()
    if node is None:
        raise _Stop(Fail("the replacement node record is gone"))
    return node


def _cluster(node: Node) -> SiteCluster:
    return SiteCluster.for_cluster(node.site.cluster)


def _transition(run: WorkflowRun, node: Node, to: str, reason: str, deadline: dt.datetime | None = None) -> Node:
    if node.state == to:
        return node
    return services.node_transition(
        node=node, to=to, actor=actor_of(run), source="workflow", reason=reason, deadline=deadline
    )


class _Stop(Exception):  # noqa: N818  # control flow: a helper decided the step's outcome
    def __init__(self, outcome: Outcome):
        super().__init__(str(outcome))
        self.outcome = outcome


StepBody = Callable[[WorkflowRun, dict[str, Any]], Outcome]


def site_step(fn: StepBody) -> StepBody:
    """Translate the site's answers into outcomes: a site that does not answer is a Wait (it may be offline
    for hours; the run's deadline bounds it), a refusal or a missing configuration fails the run, and so
    does a node state change the transition table refuses (someone moved the node meanwhile)."""

    @functools.wraps(fn)
    def wrapper(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
        try:
            return fn(run, ctx)
        except _Stop as stop:
            return stop.outcome
        except ClusterUnavailable as exc:
            if exc.status in (409, 429):
                return Retry(f"site busy: {exc}", after=exc.retry_after)
            return _unreachable(run, ctx, exc)
        except (ClusterRefused, ClusterNotConfigured) as exc:
            return Fail(f"the site refused: {exc}")
        except ClusterError as exc:
            return Retry(str(exc))
        except FleetError as exc:  # a state change the table refused (someone moved the node meanwhile)
            return Fail(exc.message)

    return wrapper


def _unreachable(run: WorkflowRun, ctx: dict[str, Any], exc: Exception) -> Outcome:
    """Wait for the site; fail with "site unreachable" when the next look would be past the deadline."""
    wait = _poll(ctx)
    if run.deadline is not None and _now() + dt.timedelta(seconds=wait) >= run.deadline:
        return Fail(f"site unreachable until the run's deadline: {exc}; nothing was changed at the site")
    return Wait(wait, f"site unreachable ({exc}); waiting")


def _find_node(cluster: SiteCluster, node: Node) -> NodeInfo | None:
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


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:30] or "app"


# --- shared steps: check-in, Ready, labels ---------------------------------------------------------


def _await_checkin(run: WorkflowRun, ctx: dict[str, Any], node: Node) -> Outcome:
    if node.state in (NodeState.JOINING, NodeState.ACTIVE):
        return Done({"checked_in_at": _now().isoformat()})
    if node.state in (NodeState.PREREGISTERED, NodeState.WIPED):
        wait = float(ctx.get("checkin_poll", settings.FLEET_NODE_CHECKIN_POLL_SECONDS))
        return Wait(wait, f"waiting for machine {node.serial} to check in at {node.site.code} (node is {node.state})")
    reason = f" ({node.state_reason})" if node.state_reason else ""
    return Fail(f"machine {node.serial} is {node.state}{reason}; it will not join as {node.hostname}")


def _await_ready(run: WorkflowRun, ctx: dict[str, Any], node: Node) -> Outcome:
    if node.state == NodeState.ACTIVE:
        return Done()
    if node.state != NodeState.JOINING:
        return Fail(f"node {node.hostname} is {node.state}, not joining")
    try:
        found = _find_node(_cluster(node), node)
    except ClusterUnavailable as exc:
        found, problem = None, f"site unreachable ({exc})"
    else:
        if found is not None and found.ready is True:
            return Done({"k8s_name": found.name})
        problem = "no Node object yet" if found is None else f"Node {found.name} is not Ready"
    if node.state_deadline is not None and _now() >= node.state_deadline:
        reason = (
            f"did not become a Ready node by its joining deadline {node.state_deadline:%Y-%m-%d %H:%M} UTC: {problem}"
        )
        _transition(run, node, NodeState.BROKEN, reason)
        return Fail(f"node {node.hostname} {reason}")
    return Wait(_poll(ctx), f"waiting for {node.hostname} to join the cluster: {problem}")


def _label(run: WorkflowRun, ctx: dict[str, Any], node: Node) -> Outcome:
    cluster = _cluster(node)
    name = str(ctx.get("k8s_name") or node.hostname)
    found = cluster.node(name)
    if found is None:
        return Retry(f"Node {name} disappeared before it was labelled")
    wanted = node_labels(node)
    missing = {k: v for k, v in wanted.items() if found.labels.get(k) != v}
    if missing:
        cluster.label_node(name, dict(missing))
    return Done({"labelled": sorted(wanted)})


def _verify(run: WorkflowRun, ctx: dict[str, Any], node: Node) -> Outcome:
    cluster = _cluster(node)
    name = str(ctx.get("k8s_name") or node.hostname)
    found = cluster.node(name)
    if found is None or found.ready is not True:
        return Wait(_poll(ctx), f"Node {name} is not Ready yet")
    if found.unschedulable:
        cluster.uncordon(name)
    missing = [k for k, v in node_labels(node).items() if found.labels.get(k) != v]
    if missing:
        return Retry(f"labels missing on {name}: {', '.join(missing)}")
    return Done()


# --- node.provision ---------------------------------------------------------------------------------


@site_step
def provision_await_checkin(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    return _await_checkin(run, ctx, _subject(run))


@site_step
def provision_await_ready(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    return _await_ready(run, ctx, _subject(run))


@site_step
def provision_label(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    return _label(run, ctx, _subject(run))


@site_step
def provision_verify(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    return _verify(run, ctx, _subject(run))


@site_step
def provision_activate(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    node = _subject(run)
    _transition(run, node, NodeState.ACTIVE, "provisioned: Ready and labelled in the cluster")
    return Done({"activated_at": _now().isoformat()})


def provision_failed(run: WorkflowRun) -> None:
    """A provisioning that ends with the machine still joining leaves it `broken`, with the run's error."""
    node = run.get_subject()
    if node is not None and node.state == NodeState.JOINING:
        _transition(run, node, NodeState.BROKEN, f"provisioning {run.state}: {run.error}"[:500])


# --- node.wipe --------------------------------------------------------------------------------------


def _past_drain(node: Node, ctx: dict[str, Any]) -> bool:
    """Whether the wipe already went past draining (a retried step after a crash)."""
    return node.state in (NodeState.WIPING, NodeState.WIPED) or bool(ctx.get("wipe_job"))


@site_step
def wipe_check_site(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Refuse to act unless the site answers: its Node object must be there to run the wipe Job on."""
    node = _subject(run)
    if _past_drain(node, ctx):
        return Done()
    found = _find_node(_cluster(node), node)  # ClusterUnavailable -> wait, then "site unreachable"
    if found is None:
        return Fail(f"node {node.hostname} is not in the cluster of site {node.site.code}: nothing to run a wipe on")
    return Done({"k8s_name": found.name, "site_checked_at": _now().isoformat()})


@site_step
def wipe_cordon(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    node = _subject(run)
    if _past_drain(node, ctx):
        return Done()
    name = str(ctx.get("k8s_name") or node.hostname)
    cluster = _cluster(node)
    found = cluster.node(name)
    if found is not None and not found.unschedulable:
        cluster.cordon(name)
    if node.state in (NodeState.ACTIVE, NodeState.BROKEN):
        _transition(run, node, NodeState.CORDONED, f"cordoned for a wipe: {ctx.get('reason', '')}")
    return Done()


@site_step
def wipe_drain(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    node = _subject(run)
    if _past_drain(node, ctx):
        return Done()
    name = str(ctx.get("k8s_name") or node.hostname)
    drain_until = _at(ctx.get("drain_until"))
    if drain_until is None:
        drain_until = _now() + dt.timedelta(seconds=float(ctx.get("drain_seconds", settings.FLEET_NODE_DRAIN_SECONDS)))
        ctx["drain_until"] = drain_until.isoformat()
    if node.state == NodeState.CORDONED:
        node = _transition(run, node, NodeState.DRAINING, "draining for a wipe", deadline=drain_until)
    progress = _cluster(node).drain(name)
    if progress.done:
        return Done({"drained_at": _now().isoformat()})
    if progress.blocked:
        pods = ", ".join(progress.blocked)
        why = "; ".join(sorted(set(progress.reasons.values())))
        if _now() >= drain_until:
            reason = f"drain blocked by {pods} past {drain_until:%H:%M:%S} UTC ({why})"
            _transition(run, node, NodeState.CORDONED, reason)
            return Fail(f"{reason}; an operator must free them (or relax the budget) and retry the run")
        return Wait(
            min(_poll(ctx), max((drain_until - _now()).total_seconds(), 0.1)),
            f"{len(progress.blocked)} pod(s) blocked by a PodDisruptionBudget: {pods} ({why}); waiting",
        )
    return Wait(min(_poll(ctx), 2.0), f"evicted {len(progress.evicted)} pod(s): {', '.join(progress.evicted)}")


@site_step
def wipe_revoke(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Revoke the machine's credential before the wipe: from here on it cannot speak for the node."""
    node = _subject(run)
    if node.state in (NodeState.WIPED, NodeState.JOINING, NodeState.ACTIVE):
        return Done()
    with transaction.atomic():
        count = devices.node_credentials_revoke(
            node=node, actor=actor_of(run), source="workflow", reason=f"wipe: {ctx.get('reason', '')}"
        )
        deadline = _now() + dt.timedelta(seconds=float(ctx.get("wipe_seconds", settings.FLEET_NODE_WIPE_SECONDS)))
        _transition(run, node, NodeState.WIPING, f"wiping: {ctx.get('reason', '')}", deadline=deadline)
    return Done({"credentials_revoked": count})


def _rejoin_note(run: WorkflowRun) -> str:
    return f"rejoin after wipe run {run.pk}"


def _rejoin_token(run: WorkflowRun, node: Node, ctx: dict[str, Any]) -> str:
    """A fresh single-use bootstrap token for the machine to register with after the wipe. An earlier
    attempt's token that never reached a Job (the worker died in between) is revoked first. The token is
    for this machine only: it travels in a Job spec at the site, readable by whoever can read Jobs there."""
    note = _rejoin_note(run)
    for stale in BootstrapToken.objects.filter(site=node.site, note=note, used_at__isnull=True, revoked_at=None):
        devices.bootstrap_token_revoke(token=stale, actor=actor_of(run), source="workflow")
    _row, plaintext = devices.bootstrap_token_issue(
        site=node.site, actor=actor_of(run), source="workflow", note=note, serials=[node.serial]
    )
    return plaintext


@site_step
def wipe_run_job(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Run the wipe Job pinned to the node; it exists at most once (its name is the run's)."""
    node = _subject(run)
    if node.state != NodeState.WIPING:
        return (
            Done()
            if node.state in (NodeState.WIPED, NodeState.JOINING, NodeState.ACTIVE)
            else Fail(f"node {node.hostname} is {node.state}, not wiping")
        )
    cluster = _cluster(node)
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
        node=str(ctx.get("k8s_name") or node.hostname),
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
    node = _subject(run)
    if node.state != NodeState.WIPING:
        return Done()
    name = str(ctx["wipe_job"])
    cluster = _cluster(node)
    status = cluster.job(JOB_NAMESPACE, name)
    expired = node.state_deadline is not None and _now() >= node.state_deadline
    finished = status is not None and (status.complete or status.failed_for_good)
    if ctx.get("rejoin") and (finished or expired):
        # The machine has read its rejoin token (or never will): the Secret's life ends with the Job's.
        cluster.delete_job_secret(JOB_NAMESPACE, name)
    if status is not None and status.complete:
        return Done({"wipe_acknowledged_at": _now().isoformat()})
    if status is not None and status.failed_for_good:
        reason = f"wipe job {name} failed: {status.message}"
        _transition(run, node, NodeState.BROKEN, reason)
        return Fail(reason)
    if expired:
        reason = f"the machine did not acknowledge the wipe (job {name}) by its deadline"
        _transition(run, node, NodeState.BROKEN, reason)
        return Fail(reason)
    if status is None:
        return Retry(f"wipe job {name} is missing at the site")
    return Wait(_poll(ctx), f"wipe job {name}: {status.active} active, waiting for the machine to acknowledge")


@site_step
def wipe_delete_node(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    node = _subject(run)
    if node.state != NodeState.WIPING:
        return Done()
    deleted = _cluster(node).delete_node(str(ctx.get("k8s_name") or node.hostname))
    _transition(run, node, NodeState.WIPED, f"wiped: {ctx.get('reason', '')}")
    return Done({"node_object_deleted": deleted})


@site_step
def wipe_await_rejoin(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    node = _subject(run)
    if not ctx.get("rejoin"):
        if ctx.get("retire") and node.state == NodeState.WIPED:
            _transition(run, node, NodeState.RETIRED, f"retired after a wipe: {ctx.get('reason', '')}")
        return Done()
    return _await_checkin(run, ctx, node)


@site_step
def wipe_await_ready(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    return _await_ready(run, ctx, _subject(run)) if ctx.get("rejoin") else Done()


@site_step
def wipe_label(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    return _label(run, ctx, _subject(run)) if ctx.get("rejoin") else Done()


@site_step
def wipe_activate(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    if not ctx.get("rejoin"):
        return Done()
    node = _subject(run)
    outcome = _verify(run, ctx, node)
    if not isinstance(outcome, Done):
        return outcome
    _transition(run, node, NodeState.ACTIVE, "rejoined after a wipe")
    return Done()


def wipe_failed(run: WorkflowRun) -> None:
    """A drain that ends unfinished gives the node back to operators cordoned; a wipe that ends unfinished
    leaves the machine `broken` (its credential is gone; nobody knows what is left on it)."""
    for token in BootstrapToken.objects.filter(note=_rejoin_note(run), used_at__isnull=True, revoked_at=None):
        # A rejoin that will not happen: its token (in the wipe Job's Secret, if it got that far) dies now.
        devices.bootstrap_token_revoke(token=token, actor=actor_of(run), source="workflow")
    node = run.get_subject()
    if node is None:
        return
    if node.state == NodeState.DRAINING:
        _transition(run, node, NodeState.CORDONED, f"wipe {run.state} while draining: {run.error}"[:500])
    elif node.state == NodeState.WIPING:
        _transition(run, node, NodeState.BROKEN, f"wipe {run.state}: {run.error}"[:500])


# --- node.replace -----------------------------------------------------------------------------------


@site_step
def replace_mark_broken(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    node = _subject(run)
    if node.state in (NodeState.BROKEN, NodeState.RETIRED):
        return Done()
    _transition(run, node, NodeState.BROKEN, f"being replaced: {ctx.get('reason', '')}")
    return Done()


@site_step
def replace_remove_from_cluster(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Cordon the old machine if it answers; a NotReady one is tainted out-of-service (so its pods move)
    and its Node object deleted. Its name is freed too when the replacement takes it over."""
    node = _subject(run)
    cluster = _cluster(node)
    found = _find_node(cluster, node)
    if found is None:
        return Done({"old_node": "not in the cluster"})
    if not found.unschedulable:
        cluster.cordon(found.name)
    if found.ready is True and ctx.get("hostname") != found.name:
        return Done({"old_node": "cordoned"})
    if found.ready is not True:
        cluster.taint(found.name, key=OUT_OF_SERVICE_TAINT, value="nodeshutdown", effect="NoExecute")
    cluster.delete_node(found.name)
    return Done({"old_node": "deleted" if found.ready is not True else "deleted (name reused)"})


@site_step
def replace_revoke(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    node = _subject(run)
    count = devices.node_credentials_revoke(
        node=node, actor=actor_of(run), source="workflow", reason=f"replaced: {ctx.get('reason', '')}"
    )
    return Done({"credentials_revoked": count})


@site_step
def replace_record(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Pre-register the replacement's serial at the same site. Reusing the old hostname needs the old
    record retired first (hostnames are unique among a site's live machines)."""
    old = _subject(run)
    serial = str(ctx["replacement_serial"])
    existing = Node.objects.filter(serial=serial).first()
    if existing is not None:
        if existing.pk == ctx.get("replacement_node_id") or (
            existing.site_id == old.site_id and existing.created_at >= run.created_at
        ):
            return Done({"replacement_node_id": existing.pk})  # created by an earlier attempt of this step
        return Fail(f"serial {serial} is already in use by node {existing.hostname} at {existing.site.code}")
    hostname = str(ctx.get("hostname") or old.hostname)
    try:
        with transaction.atomic():
            if hostname == old.hostname and old.state != NodeState.RETIRED:
                _transition(run, old, NodeState.RETIRED, f"replaced by {serial} (shipment {ctx.get('shipment_ref')})")
            new = services.node_create(
                actor=actor_of(run),
                source="workflow",
                serial=serial,
                site=old.site,
                hostname=hostname,
                mac=str(ctx["replacement_mac"]),
                role=str(ctx.get("role") or old.role),
                hardware_model=old.hardware_model,
            )
            audit_record(
                actor=actor_of(run),
                verb="record_replacement",
                obj=old,
                source="workflow",
                payload={"replacement_serial": serial, "shipment_ref": ctx.get("shipment_ref", ""), "node": new.pk},
            )
    except FleetError as exc:
        return Fail(f"cannot record the replacement: {exc.message}")
    return Done({"replacement_node_id": new.pk})


@site_step
def replace_await_checkin(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    return _await_checkin(run, ctx, _replacement(ctx))


@site_step
def replace_await_ready(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    return _await_ready(run, ctx, _replacement(ctx))


@site_step
def replace_label(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    return _label(run, ctx, _replacement(ctx))


@site_step
def replace_rehydrate(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """Restore each application's latest reported backup onto the replacement, with a Job pinned to it.

    Which applications are restored, with which image and in which namespace, is the applications' own
    record (sites.rehydration: the rollouts app's restore targets), read when the plan is made and again
    when each Job is created; the edge only said where the backups are. The plan (which backup of which
    application) is fixed at the first pass, so a newer backup arriving meanwhile does not change it.
    """
    new = _replacement(ctx)
    if "restores" not in ctx:
        backups = selectors.latest_backups(new.site)
        if not backups and not _has_reported(new):
            # Nothing known yet for this site (e.g. its only other machine died before reporting): the
            # replacement's first heartbeat carries the site's backup list. Wait for it, briefly.
            until = _at(ctx.get("report_wait_until")) or _now() + dt.timedelta(seconds=10 * _poll(ctx))
            ctx["report_wait_until"] = until.isoformat()
            if _now() < until:
                return Wait(
                    _poll(ctx), f"no backups known for {new.site.code} yet; waiting for {new.hostname} to report"
                )
        backups = selectors.latest_backups(new.site)
        targets = rehydration.restore_targets(list(backups))
        ctx["restores"] = {
            app: {
                "job": f"edgefleet-restore-{_slug(app)}-{run.pk}",
                "namespace": targets[app].namespace,
                "location": backup.location,
            }
            for app, backup in backups.items()
            if app in targets
        }
        ctx["not_restorable"] = sorted(set(backups) - set(targets))
    restores: dict[str, dict[str, str]] = ctx["restores"]
    skipped = list(ctx.get("not_restorable") or [])
    if not restores:
        return Done({"restored": [], "not_restorable": skipped})
    cluster = _cluster(new)
    current = rehydration.restore_targets(list(restores))  # read again at use: the record may have changed
    pending, failed = [], []
    for app, plan in sorted(restores.items()):
        status = cluster.job(plan["namespace"], plan["job"])
        if status is None:
            target = current.get(app)
            if target is None:
                skipped.append(app)  # no longer stateful with a restore image: nothing trusted to run
                continue
            plan["namespace"] = target.namespace
            cluster.ensure_namespace(target.namespace)
            cluster.create_job(
                namespace=target.namespace,
                name=plan["job"],
                node=str(ctx.get("k8s_name") or new.hostname),
                image=target.image,
                env={
                    "BACKUP_LOCATION": plan["location"],
                    "BACKUP_APPLICATION": app,
                    "BACKUP_NAMESPACE": target.namespace,
                },
                labels={ACTION_LABEL: "restore", NODE_ID_LABEL: str(new.pk), "edgefleet.io/application": _slug(app)},
                tolerations=RESTORE_TOLERATIONS,
            )
            pending.append(f"{app} (started)")
        elif status.failed_for_good:
            failed.append(f"{app}: {status.message}")
        elif not status.complete:
            pending.append(f"{app} (running)")
    if failed:
        return Fail(f"restore failed: {'; '.join(failed)}")
    if pending:
        return Wait(_poll(ctx), f"restoring {len(pending)} of {len(restores)} application(s): {', '.join(pending)}")
    restored = sorted(app for app in restores if app not in skipped)
    return Done({"restored": restored, "not_restorable": sorted(set(skipped))})


def _has_reported(node: Node) -> bool:
    """Whether the machine has heartbeated with its current credential (a heartbeat reports backups)."""
    return NodeCredential.objects.filter(node=node, revoked_at=None, last_used_at__isnull=False).exists()


@site_step
def replace_verify_site(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    new, old = _replacement(ctx), _subject(run)
    nodes = _cluster(new).nodes()
    old_name = old.hostname if old.hostname != new.hostname else None
    not_ready = [n.name for n in nodes if n.ready is not True and n.name != old_name]
    if not any(n.name == str(ctx.get("k8s_name") or new.hostname) for n in nodes):
        not_ready.append(f"{new.hostname} (missing)")
    if not_ready:
        return Wait(_poll(ctx), f"site {new.site.code} not healthy yet: not Ready: {', '.join(not_ready)}")
    return Done({"site_nodes_ready": len(nodes)})


@site_step
def replace_finish(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    new, old = _replacement(ctx), _subject(run)
    if old.state != NodeState.RETIRED and old.hostname != new.hostname:
        _cluster(old).delete_node(old.hostname)  # a cordoned old machine leaves the cluster now
    _transition(run, new, NodeState.ACTIVE, f"replaced {old.serial}; re-hydrated")
    _transition(run, old, NodeState.RETIRED, f"replaced by {new.serial} (shipment {ctx.get('shipment_ref', '')})")
    return Done()


# --- registration -----------------------------------------------------------------------------------


def _io(name: str, fn: StepBody, **limits: Any) -> Step:
    limits.setdefault("timeout", _step_timeout())
    limits.setdefault("max_attempts", 8)
    return Step(name, fn, queue="io", retry_cap=60.0, **limits)


def _db(name: str, fn: StepBody) -> Step:
    return Step(name, fn, timeout=_step_timeout(), max_attempts=5)


PROVISION_WORKFLOW = register(
    Workflow(
        kind=PROVISION,
        steps=[
            _db("await_checkin", provision_await_checkin),
            _io("await_ready", provision_await_ready),
            _io("label", provision_label),
            _io("verify", provision_verify),
            _db("activate", provision_activate),
        ],
        deadline=dt.timedelta(days=14),
        exclusive=True,
        on_fail=provision_failed,
        description="await a pre-registered machine's check-in, its Node Ready; label; verify; active",
    )
)

WIPE_WORKFLOW = register(
    Workflow(
        kind=WIPE,
        steps=[
            _io("check_site", wipe_check_site),
            _io("cordon", wipe_cordon),
            _io("drain", wipe_drain),
            _db("revoke_credentials", wipe_revoke),
            _io("run_wipe_job", wipe_run_job),
            _io("await_wipe", wipe_await_job),
            _io("delete_node", wipe_delete_node),
            _db("await_rejoin", wipe_await_rejoin),
            _io("await_ready", wipe_await_ready),
            _io("label", wipe_label),
            _io("activate", wipe_activate),
        ],
        deadline=dt.timedelta(hours=4),
        exclusive=True,
        on_fail=wipe_failed,
        description="cordon, drain, revoke, wipe Job, delete the Node: wiped (then optionally rejoin)",
    )
)

REPLACE_WORKFLOW = register(
    Workflow(
        kind=REPLACE,
        steps=[
            _db("mark_broken", replace_mark_broken),
            _io("remove_from_cluster", replace_remove_from_cluster),
            _db("revoke_credentials", replace_revoke),
            _db("record_replacement", replace_record),
            _db("await_checkin", replace_await_checkin),
            _io("await_ready", replace_await_ready),
            _io("label", replace_label),
            _io("rehydrate", replace_rehydrate),
            _io("verify_site", replace_verify_site),
            _io("finish", replace_finish),
        ],
        deadline=dt.timedelta(days=30),
        exclusive=True,
        description="throw-away: out of the cluster, revoke, ship a replacement, join, re-hydrate, retire",
    )
)
