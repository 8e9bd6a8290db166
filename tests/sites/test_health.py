"""The two pure decisions of sites.health: a node's health from what its cluster and the machine say, and a
site's from its recorded inputs. No database, no network: inputs in, a verdict out."""

import datetime as dt

import pytest

from sites.choices import ClusterReachability, NodeHealth, NodeState, SiteHealth, SiteState
from sites.health import (
    DRIFT_GRACE,
    SEEN_RECENTLY,
    Health,
    NodeObservation,
    NodeSummary,
    SiteInputs,
    node_health,
    site_health,
)

NOW = dt.datetime(2026, 5, 3, 14, 30, tzinfo=dt.UTC)
T = NOW - dt.timedelta(minutes=28)  # 14:02
READY = Health(NodeHealth.READY, NOW - dt.timedelta(days=2))


def minutes(n: float) -> dt.timedelta:
    return dt.timedelta(minutes=n)


# --- nodes ------------------------------------------------------------------------------------------


def test_a_node_the_cluster_says_is_ready_is_ready_and_seen_now() -> None:
    verdict = node_health(
        current=Health(NodeHealth.NOT_SEEN),
        last_seen=None,
        observed=NodeObservation(ready=True, ready_since=T, seen_at=NOW),
        cluster_answered=True,
        now=NOW,
    )

    assert (verdict.health, verdict.since, verdict.last_seen) == (NodeHealth.READY, T, NOW)


def test_an_unchanged_health_keeps_its_since() -> None:
    verdict = node_health(
        current=READY,
        last_seen=NOW - minutes(5),
        observed=NodeObservation(True, T, NOW),
        cluster_answered=True,
        now=NOW,
    )

    assert verdict.since == READY.since  # not the condition's time, not the probe's: it has been ready since then


def test_a_kubelet_reporting_not_ready_is_not_ready_since_the_transition_with_its_reason() -> None:
    observed = NodeObservation(ready=False, ready_since=T, seen_at=NOW, reason="KubeletNotReady", message="PLEG")

    verdict = node_health(current=READY, last_seen=NOW, observed=observed, cluster_answered=True, now=NOW)

    assert (verdict.health, verdict.since, verdict.reason) == (
        NodeHealth.NOT_READY,
        T,
        "kubelet: KubeletNotReady: PLEG",
    )


def test_a_dead_machine_is_not_seen_since_its_last_lease_renewal() -> None:
    # Ready Unknown: the kubelet stopped posting; its lease was last renewed at T; no heartbeat since
    observed = NodeObservation(ready=None, ready_since=T + minutes(1), seen_at=T)

    verdict = node_health(current=READY, last_seen=T - minutes(1), observed=observed, cluster_answered=True, now=NOW)

    assert (verdict.health, verdict.since, verdict.last_seen) == (NodeHealth.NOT_SEEN, T, T)
    assert verdict.reason == "its kubelet stopped posting status"


def test_a_machine_that_heartbeats_whose_kubelet_is_silent_is_not_ready_not_unseen() -> None:
    heartbeat = NOW - SEEN_RECENTLY / 2
    observed = NodeObservation(ready=None, ready_since=T, seen_at=T)

    verdict = node_health(
        current=READY, last_seen=heartbeat, heartbeat_at=heartbeat, observed=observed, cluster_answered=True, now=NOW
    )

    assert (verdict.health, verdict.since) == (NodeHealth.NOT_READY, T)
    assert verdict.reason == "its kubelet stopped posting status, but the machine is heard from"


def test_a_recent_probe_is_no_sign_of_life_once_the_cluster_says_the_kubelet_went_silent() -> None:
    # Seen Ready by a probe a minute ago, then its kubelet died (the imported machines never heartbeat)
    probed = NOW - minutes(1)
    observed = NodeObservation(ready=None, ready_since=NOW - minutes(0.5), seen_at=NOW - minutes(0.6))

    verdict = node_health(current=READY, last_seen=probed, observed=observed, cluster_answered=True, now=NOW)

    assert (verdict.health, verdict.since) == (NodeHealth.NOT_SEEN, NOW - minutes(0.6))


def test_a_machine_missing_from_its_cluster_is_not_seen_and_one_never_seen_says_so() -> None:
    seen_before = node_health(current=READY, last_seen=T, observed=None, cluster_answered=True, now=NOW)
    never = node_health(
        current=Health(NodeHealth.NOT_SEEN), last_seen=None, observed=None, cluster_answered=True, now=NOW
    )

    assert (seen_before.health, seen_before.since, seen_before.reason) == (NodeHealth.NOT_SEEN, T, "not in its cluster")
    assert (never.health, never.since, never.reason) == (NodeHealth.NOT_SEEN, NOW, "not in its cluster; never seen")


def test_an_unreachable_cluster_changes_nothing_while_the_machine_is_heard_from() -> None:
    recent = node_health(current=READY, last_seen=NOW - minutes(1), observed=None, cluster_answered=False, now=NOW)
    silent = node_health(current=READY, last_seen=T, observed=None, cluster_answered=False, now=NOW)

    assert (recent.health, recent.since) == (READY.health, READY.since)
    assert (silent.health, silent.since) == (NodeHealth.NOT_SEEN, T)
    assert silent.reason == "no heartbeat, and its cluster cannot be reached"


def test_an_edge_clock_running_ahead_never_dates_anything_after_now() -> None:
    ahead = NOW + minutes(10)

    verdict = node_health(
        current=Health(NodeHealth.NOT_SEEN), last_seen=None, observed=NodeObservation(True, ahead, ahead),
        cluster_answered=True, now=NOW,
    )  # fmt: skip

    assert verdict.since == NOW and verdict.last_seen == NOW


# --- sites ------------------------------------------------------------------------------------------


def reachable(**inputs: object) -> SiteInputs:
    nodes = (
        NodeSummary("nuc-1", NodeState.ACTIVE, NodeHealth.READY, T),
        NodeSummary("nuc-2", NodeState.ACTIVE, NodeHealth.READY, T),
    )
    defaults: dict[str, object] = {
        "state": SiteState.ACTIVE,
        "reachability": ClusterReachability.REACHABLE,
        "has_credentials": True,
        "nodes": nodes,
    }
    return SiteInputs(**{**defaults, **inputs})  # type: ignore[arg-type]


HEALTHY = Health(SiteHealth.HEALTHY, NOW - dt.timedelta(days=1))


def test_a_reachable_site_with_ready_nodes_and_no_drift_is_healthy() -> None:
    assert site_health(reachable(), current=HEALTHY, now=NOW) == HEALTHY


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (SiteState.PLANNED, "planned: not in service yet"),
        (SiteState.OFFLINE, "marked offline"),
        (SiteState.DECOMMISSIONED, "decommissioned"),
    ],
)
def test_a_site_not_in_service_is_offline_whatever_its_cluster_says(state: str, reason: str) -> None:
    inputs = reachable(state=state, reachability=ClusterReachability.UNREACHABLE)

    assert site_health(inputs, current=HEALTHY, now=NOW) == Health(SiteHealth.OFFLINE, NOW, reason)


@pytest.mark.parametrize("reachability", [ClusterReachability.UNREACHABLE, ClusterReachability.UNAUTHORIZED])
def test_an_unreachable_cluster_makes_the_site_unreachable_since_its_first_failed_probe(reachability: str) -> None:
    error = "cannot reach the cluster at 10.2.3.4:6443 (connection refused) since 14:02"
    inputs = reachable(reachability=reachability, failing_since=T, cluster_error=error)

    assert site_health(inputs, current=HEALTHY, now=NOW) == Health(SiteHealth.UNREACHABLE, T, error)


def test_a_site_never_probed_or_without_credentials_is_unreachable_and_says_why() -> None:
    never = reachable(reachability=ClusterReachability.UNKNOWN)
    bare = reachable(reachability=ClusterReachability.UNKNOWN, has_credentials=False)

    assert site_health(never, current=HEALTHY, now=NOW).reason == "the cluster has not been probed yet"
    assert site_health(bare, current=HEALTHY, now=NOW).reason == "no cluster endpoint or credentials are recorded"


def test_a_node_down_degrades_the_site_naming_the_node_and_since_when() -> None:
    nodes = (
        NodeSummary("nuc-2", NodeState.ACTIVE, NodeHealth.NOT_READY, T),
        NodeSummary("nuc-1", NodeState.CORDONED, NodeHealth.NOT_SEEN, T - minutes(60)),
        NodeSummary("nuc-3", NodeState.BROKEN, NodeHealth.NOT_SEEN, T),
        NodeSummary("nuc-4", NodeState.WIPED, NodeHealth.NOT_SEEN, T),  # not counted
        NodeSummary("nuc-5", NodeState.PREREGISTERED, NodeHealth.NOT_SEEN, None),  # not counted
    )

    verdict = site_health(reachable(nodes=nodes), current=HEALTHY, now=NOW)

    assert verdict.health == SiteHealth.DEGRADED and verdict.since == NOW
    assert verdict.reason == "node nuc-1 not seen since 13:02; node nuc-2 not ready since 14:02; node nuc-3 broken"


def test_drift_degrades_the_site_after_a_grace_and_a_failing_sync_at_once() -> None:
    head, applied = "8a1b2c3d4e5f60718293a4b5c6d7e8f901234567", "3f9c2e1aa0b1c2d3e4f5a6b7c8d9e0f112233445"
    fresh = reachable(head_revision=head, applied_revision=applied, drifted_since=NOW - DRIFT_GRACE / 2)
    old = reachable(head_revision=head, applied_revision=applied, drifted_since=T)
    failing = reachable(
        head_revision=head, applied_revision=applied, drifted_since=NOW - minutes(1), sync_error="invalid Deployment"
    )

    assert site_health(fresh, current=HEALTHY, now=NOW) == HEALTHY  # the agent has a poll or two to apply it
    assert site_health(old, current=HEALTHY, now=NOW).reason == "drift: applied 3f9c2e1, head 8a1b2c3 since 14:02"
    assert site_health(failing, current=HEALTHY, now=NOW).reason == (
        "sync failing: invalid Deployment; drift: applied 3f9c2e1, head 8a1b2c3 since 14:29"
    )


def test_a_failed_last_rollout_degrades_the_site() -> None:
    inputs = reachable(rollout_error="Deployment pos/web: ProgressDeadlineExceeded since 13:50")

    verdict = site_health(inputs, current=HEALTHY, now=NOW)

    assert verdict.health == SiteHealth.DEGRADED
    assert verdict.reason == "last rollout failed here: Deployment pos/web: ProgressDeadlineExceeded since 13:50"


def test_a_degraded_site_keeps_its_since_while_what_is_wrong_changes() -> None:
    degraded = Health(SiteHealth.DEGRADED, T, "node nuc-2 not ready since 14:02")
    nodes = (NodeSummary("nuc-1", NodeState.ACTIVE, NodeHealth.NOT_READY, NOW),)

    verdict = site_health(reachable(nodes=nodes), current=degraded, now=NOW)

    assert verdict == Health(SiteHealth.DEGRADED, T, "node nuc-1 not ready since 14:30")


def test_times_of_another_day_carry_their_date() -> None:
    nodes = (NodeSummary("nuc-1", NodeState.ACTIVE, NodeHealth.NOT_SEEN, NOW - dt.timedelta(days=2)),)

    assert (
        site_health(reachable(nodes=nodes), current=HEALTHY, now=NOW).reason == "node nuc-1 not seen since May 1 14:30"
    )
