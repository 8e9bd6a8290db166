"""Health, decided: what the edge and the cluster say about each machine, and what that makes of its site.

Two pure decisions in the shape of `rollouts.progress.decide()`: they take what was observed and what
is recorded, with the clock given, and return a verdict. Nothing here touches the database or the
network; `sites.health_records` gathers the inputs and writes the verdicts, so every writer (the probe,
the device heartbeat, the drift check, node and site transitions) decides in the same way.

A node is `ready` (the cluster's Node object says Ready), `not_ready` since T (the kubelet reports
NotReady, or the machine is alive but its kubelet is not reporting) or `not_seen` since T (neither its
kubelet nor the machine itself has been heard from since T). A site is `offline` when it is not meant to
be in service (planned, marked offline, decommissioned), `unreachable` since T when its cluster cannot
be reached or refuses us, `degraded` when something named is wrong (a node, drift from its repository,
a failing sync, a failed rollout), and `healthy` otherwise.
"""

import datetime as dt
from dataclasses import dataclass

from sites.choices import (
    NODE_HEALTH_COUNTED_STATES,
    SITE_NOT_IN_SERVICE_STATES,
    ClusterReachability,
    NodeHealth,
    NodeState,
    SiteHealth,
    SiteState,
)
from sites.messages import clock

# A machine heard from within this is alive: its own heartbeat (devices heartbeat every few seconds to a
# minute), or any sign of it while its cluster cannot be asked (Kubernetes marks a node Unknown 40 s after
# its lease stops).
SEEN_RECENTLY = dt.timedelta(seconds=90)
# A site whose applied revision differs from its repository head for longer than this is degraded
# (a rollout's commit takes the GitOps agent a poll or two to apply); a failing sync counts at once.
DRIFT_GRACE = dt.timedelta(minutes=10)
MAX_REASON = 500


@dataclass(frozen=True)
class Health:
    """A verdict, or what is recorded: the health value, since when, and why (for people)."""

    health: str
    since: dt.datetime | None = None
    reason: str = ""


# --- nodes ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeObservation:
    """One Node object as the probe read it.

    `ready` is its Ready condition (None: Unknown, the node controller's word for a kubelet that stopped
    reporting); `ready_since` that condition's lastTransitionTime; `seen_at` the cluster's last word from
    the kubelet (the probe's time for a Ready node, whose lease the node controller vouches for; else the
    later of the node Lease's renewTime and the condition's lastHeartbeatTime).
    """

    ready: bool | None
    ready_since: dt.datetime | None = None
    seen_at: dt.datetime | None = None
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class NodeVerdict(Health):
    last_seen: dt.datetime | None = None


def node_health(
    *,
    current: Health,
    last_seen: dt.datetime | None,
    observed: NodeObservation | None,
    cluster_answered: bool,
    now: dt.datetime,
    heartbeat_at: dt.datetime | None = None,
) -> NodeVerdict:
    """The node's health from what its cluster said (`observed`; None when the cluster answered without
    this node, or did not answer at all: `cluster_answered`), when the machine was last seen by anyone
    (`last_seen`) and when it last heartbeat itself (`heartbeat_at`, the device API).

    A kubelet the cluster no longer hears from is `not_seen`, unless the machine itself still heartbeats
    (then it is alive and `not_ready`). An unchanged health keeps its `since`, so "not ready since 14:02"
    does not move with every probe.
    """
    seen = _latest(last_seen, _not_after(observed.seen_at, now) if observed else None)
    if not cluster_answered:
        if _recent(seen, now) or current.health == NodeHealth.NOT_SEEN:
            return _keep(current, seen)
        verdict = Health(NodeHealth.NOT_SEEN, seen or now, "no heartbeat, and its cluster cannot be reached")
    elif observed is not None and observed.ready is True:
        verdict = Health(NodeHealth.READY, _not_after(observed.ready_since, now) or now)
    elif observed is not None and observed.ready is False:
        why = ": ".join(part for part in (observed.reason, observed.message) if part) or "NotReady"
        verdict = Health(NodeHealth.NOT_READY, _not_after(observed.ready_since, now) or now, f"kubelet: {why}")
    else:
        missing = "not in its cluster" if observed is None else "its kubelet stopped posting status"
        if _recent(heartbeat_at, now):
            since = _not_after(observed.ready_since, now) if observed else None
            verdict = Health(NodeHealth.NOT_READY, since or now, f"{missing}, but the machine is heard from")
        else:
            verdict = Health(NodeHealth.NOT_SEEN, seen or now, missing if seen else f"{missing}; never seen")
    return _settle(current, verdict, seen)


def _settle(current: Health, verdict: Health, seen: dt.datetime | None) -> NodeVerdict:
    since = current.since if verdict.health == current.health and current.since is not None else verdict.since
    return NodeVerdict(verdict.health, since, verdict.reason[:MAX_REASON], last_seen=seen)


def _keep(current: Health, seen: dt.datetime | None) -> NodeVerdict:
    return NodeVerdict(current.health, current.since, current.reason, last_seen=seen)


def _recent(at: dt.datetime | None, now: dt.datetime) -> bool:
    return at is not None and now - at <= SEEN_RECENTLY


def _latest(*times: dt.datetime | None) -> dt.datetime | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None


def _not_after(at: dt.datetime | None, now: dt.datetime) -> dt.datetime | None:
    """A time from the edge's clock, never later than ours (an edge clock running ahead)."""
    return None if at is None else min(at, now)


# --- sites ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeSummary:
    hostname: str
    state: str
    health: str
    since: dt.datetime | None


@dataclass(frozen=True)
class SiteInputs:
    """Everything a site's health is decided from, as recorded (sites.health_records.site_inputs)."""

    state: str
    reachability: str = ClusterReachability.UNKNOWN
    has_credentials: bool = False
    cluster_error: str = ""  # the sentence the last probe recorded (sites.messages)
    failing_since: dt.datetime | None = None  # the first failed probe since the cluster last answered
    nodes: tuple[NodeSummary, ...] = ()
    applied_revision: str = ""
    head_revision: str = ""
    drifted_since: dt.datetime | None = None
    sync_error: str = ""  # the GitOps agent's failure, when it reports one
    rollout_error: str = ""  # the site's latest rollout failed here: why


def site_health(inputs: SiteInputs, *, current: Health, now: dt.datetime) -> Health:
    """The site's health from its recorded inputs; an unchanged health keeps its `since`."""
    if inputs.state in SITE_NOT_IN_SERVICE_STATES:
        verdict = Health(SiteHealth.OFFLINE, now, _OFFLINE_REASONS.get(inputs.state, inputs.state))
    elif inputs.reachability in (ClusterReachability.UNREACHABLE, ClusterReachability.UNAUTHORIZED):
        verdict = Health(SiteHealth.UNREACHABLE, inputs.failing_since or now, inputs.cluster_error)
    elif inputs.reachability != ClusterReachability.REACHABLE:
        why = "the cluster has not been probed yet" if inputs.has_credentials else inputs.cluster_error
        verdict = Health(SiteHealth.UNREACHABLE, now, why or "no cluster endpoint or credentials are recorded")
    else:
        problems = [*_node_problems(inputs.nodes, now), *_sync_problems(inputs, now)]
        if inputs.rollout_error:
            problems.append(f"last rollout failed here: {inputs.rollout_error}")
        verdict = Health(SiteHealth.DEGRADED, now, "; ".join(problems)) if problems else Health(SiteHealth.HEALTHY, now)
    since = current.since if verdict.health == current.health and current.since is not None else verdict.since
    return Health(verdict.health, since, _bounded(verdict.reason))


_OFFLINE_REASONS: dict[str, str] = {
    SiteState.PLANNED: "planned: not in service yet",
    SiteState.OFFLINE: "marked offline",
    SiteState.DECOMMISSIONED: "decommissioned",
}


def _node_problems(nodes: tuple[NodeSummary, ...], now: dt.datetime) -> list[str]:
    problems = []
    for node in sorted(nodes, key=lambda n: n.hostname):
        if node.state not in NODE_HEALTH_COUNTED_STATES:
            continue
        if node.state == NodeState.BROKEN:
            problems.append(f"node {node.hostname} broken")
        elif node.health != NodeHealth.READY:
            words = "not seen" if node.health == NodeHealth.NOT_SEEN else "not ready"
            since = f" since {clock(node.since, now)}" if node.since else ""
            problems.append(f"node {node.hostname} {words}{since}")
    return problems


def _sync_problems(inputs: SiteInputs, now: dt.datetime) -> list[str]:
    problems = []
    if inputs.sync_error:
        problems.append(f"sync failing: {inputs.sync_error}")
    if inputs.drifted_since is not None and (inputs.sync_error or now - inputs.drifted_since >= DRIFT_GRACE):
        applied = inputs.applied_revision[:7] or "nothing"
        problems.append(
            f"drift: applied {applied}, head {inputs.head_revision[:7] or '?'} since {clock(inputs.drifted_since, now)}"
        )
    return problems


def _bounded(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + "…"
