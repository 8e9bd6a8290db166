"""rollouts.health.assess: when a site is healthy with the release, when it has failed, and when to wait."""

import datetime as dt
from typing import Any

from rollouts.health import HealthPolicy, assess
from sites.clusters import ContainerWaiting, DeploymentHealth, PodHealth, WorkloadCondition

T0 = 1_750_000_000.0  # seconds since the epoch, on our clock
KEY = ("pos", "pos-bridge")
EDGE_TIME = dt.datetime(2025, 6, 15, 14, 2, 11, tzinfo=dt.UTC)


def deployment(
    *, available: int = 1, replicas: int = 1, generation: int = 2, observed: int = 2, updated: int | None = None,
    progressing: tuple[bool, str, str] | None = None, own_deadline: int | None = 600,
) -> DeploymentHealth:  # fmt: skip
    condition = None
    if progressing is not None:
        status, reason, message = progressing
        condition = WorkloadCondition(status=status, reason=reason, message=message, since=EDGE_TIME, updated=None)
    return DeploymentHealth(
        name=KEY[1],
        namespace=KEY[0],
        generation=generation,
        observed_generation=observed,
        replicas=replicas,
        updated=replicas if updated is None else updated,
        available=available,
        ready=available,
        total=replicas,
        progress_deadline_seconds=own_deadline,
        progressing=condition,
    )


def pod(name: str, reason: str | None, *, owner: str = "pos-bridge-7d9f8c6b5", restarts: int = 0) -> PodHealth:
    waiting = (ContainerWaiting(container="bridge", reason=reason, message=f"{reason} details", restarts=restarts),)
    return PodHealth(
        namespace="pos",
        name=name,
        owner_kind="ReplicaSet",
        owner_name=owner,
        phase="Running",
        ready=False,
        waiting=waiting if reason else (),
    )


class Site:
    """One site polled over time: the memory the converge step keeps in its context between polls."""

    def __init__(self, **policy: Any):
        self.memory: dict[str, Any] = {}
        self.policy = HealthPolicy(**{"pod_grace_seconds": 60.0, "pods_after_seconds": 5.0, **policy})

    def poll(self, at: float, d: DeploymentHealth | None, pods: list[PodHealth] | None = None) -> Any:
        found = {KEY: d} if d is not None else {}
        return assess(wanted=[KEY], deployments=found, pods=pods, memory=self.memory, policy=self.policy, now=at)


def test_available_at_its_new_generation_is_healthy_at_once_by_default() -> None:
    verdict = Site().poll(T0, deployment())
    assert verdict.healthy


def test_a_release_without_deployments_is_healthy() -> None:
    verdict = assess(wanted=[], deployments={}, pods=None, memory={}, policy=HealthPolicy(), now=T0)
    assert verdict.healthy


def test_the_deployments_own_deadline_verdict_fails_the_site_with_a_sentence() -> None:
    broken = deployment(
        available=0,
        progressing=(False, "ProgressDeadlineExceeded", 'ReplicaSet "pos-bridge-7d9f8c6b5" has timed out progressing.'),
    )
    verdict = Site().poll(T0, broken)
    assert verdict.failed
    assert verdict.message.startswith("Deployment pos/pos-bridge reports ProgressDeadlineExceeded since ")
    assert "14:02:11 UTC" in verdict.message
    assert "has timed out progressing" in verdict.message and "0 of 1 replica(s) available" in verdict.message


def test_a_deadline_verdict_about_the_previous_generation_says_nothing_about_this_one() -> None:
    stale = deployment(available=0, observed=1, progressing=(False, "ProgressDeadlineExceeded", "old news"), updated=0)
    verdict = Site().poll(T0, stale)
    assert not verdict.failed and not verdict.healthy


def test_no_progress_for_the_plans_deadline_fails_and_progress_resets_the_clock() -> None:
    site = Site(progress_deadline_seconds=30)
    assert site.poll(T0, deployment(available=0)).state == "waiting"
    assert site.poll(T0 + 29, deployment(available=0)).state == "waiting"
    # A replica becomes ready: progress, so the deadline counts again from here
    moving = deployment(available=1, replicas=2, updated=2)
    assert site.poll(T0 + 29.5, moving).state == "waiting"
    assert site.poll(T0 + 59, moving).state == "waiting"
    verdict = site.poll(T0 + 60, moving)
    assert verdict.failed
    assert "Deployment pos/pos-bridge made no progress for 30 s (the plan's progress deadline)" in verdict.message
    assert "1 of 2 replica(s) available" in verdict.message


def test_without_a_plan_deadline_the_deployments_own_applies() -> None:
    site = Site()
    assert not site.poll(T0, deployment(available=0, own_deadline=45)).failed
    verdict = site.poll(T0 + 46, deployment(available=0, own_deadline=45))
    assert verdict.failed and "no progress for 45 s (its progressDeadlineSeconds)" in verdict.message
    # A Deployment that opted out of deadlines (and no plan deadline) is not timed out by us either
    assert not Site().poll(T0 + 10_000, deployment(available=0, own_deadline=None)).failed


def test_min_success_holds_a_site_that_goes_unhealthy_right_after_becoming_available() -> None:
    site = Site(min_success_seconds=60)
    held = site.poll(T0, deployment())
    assert held.state == "waiting" and held.recheck_in == 60
    assert "counts as succeeded after 60 s" in held.message
    assert site.poll(T0 + 20, deployment(available=0)).state == "waiting"  # it lost its replica
    back = site.poll(T0 + 30, deployment())
    assert back.state == "waiting" and back.recheck_in == 60  # the hold starts again
    assert site.poll(T0 + 89, deployment()).state == "waiting"
    assert site.poll(T0 + 90, deployment()).healthy


def test_pods_are_read_only_once_a_deployment_has_been_unavailable_for_a_while() -> None:
    site = Site()
    first = site.poll(T0, deployment(available=0))
    assert not first.read_pods
    later = site.poll(T0 + 5, deployment(available=0))
    assert later.read_pods and later.namespaces == ("pos",)


def test_a_crash_looping_pod_fails_the_site_after_the_grace() -> None:
    site = Site()
    broken = deployment(available=0)
    site.poll(T0, broken)
    crashing = [pod("pos-bridge-7d9f8c6b5-abcde", "CrashLoopBackOff", restarts=3)]
    within = site.poll(T0 + 5, broken, crashing)
    assert within.state == "waiting"
    assert "pod pos/pos-bridge-7d9f8c6b5-abcde of Deployment pos/pos-bridge is in CrashLoopBackOff" in within.message
    assert not site.poll(T0 + 64, broken, crashing).failed
    verdict = site.poll(T0 + 65, broken, crashing)
    assert verdict.failed
    assert verdict.message.startswith(
        "pod pos/pos-bridge-7d9f8c6b5-abcde of Deployment pos/pos-bridge is in CrashLoopBackOff since "
    )
    assert "(container bridge, 3 restart(s)): CrashLoopBackOff details" in verdict.message


def test_an_image_that_cannot_be_pulled_is_one_condition_across_its_two_reasons() -> None:
    site = Site()
    broken = deployment(available=0)
    site.poll(T0, broken)
    site.poll(T0 + 5, broken, [pod("p1", "ErrImagePull")])
    site.poll(T0 + 30, broken, [pod("p1", "ImagePullBackOff")])
    verdict = site.poll(T0 + 66, broken, [pod("p1", "ErrImagePull")])
    assert verdict.failed and "is in ErrImagePull" in verdict.message


def test_a_pod_that_recovers_starts_its_grace_again_and_other_workloads_pods_do_not_count() -> None:
    site = Site()
    broken = deployment(available=0)
    site.poll(T0, broken)
    site.poll(T0 + 5, broken, [pod("p1", "CrashLoopBackOff")])
    site.poll(T0 + 40, broken, [pod("p1", None)])  # running again for a moment
    assert not site.poll(T0 + 70, broken, [pod("p1", "CrashLoopBackOff")]).failed
    # Somebody else's pod in the namespace crash-loops: not the release's business
    other = [pod("cache-1", "CrashLoopBackOff", owner="cache-5c6d7f8g9")]
    assert not site.poll(T0 + 200, broken, other).failed


def test_a_deployment_that_never_appears_fails_after_the_default_deadline() -> None:
    site = Site()
    assert site.poll(T0, None).state == "waiting"
    verdict = site.poll(T0 + 601, None)
    assert verdict.failed and "Deployment pos/pos-bridge made no progress for 600 s" in verdict.message
