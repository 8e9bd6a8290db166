"""Is the release healthy at a site? A pure function from what the site reports to a verdict.

The site run's converge step calls `assess` on every poll once the edge applied the commit, with the
release's Deployments as the site reports them (and, only when one of them has been unavailable for a
few seconds, the pods of their namespaces), and acts on the verdict: `healthy` ends the run, `failed`
fails the site (it counts against the wave's failure threshold), `waiting` polls again. Nothing here
touches the database or the network, so the rules are tested on their own (tests/rollouts/test_health.py).

A site fails, with a sentence naming the workload, its namespace, the reason and since when, as soon as:

- a Deployment reports `Progressing=False` with `ProgressDeadlineExceeded` about its current
  generation (Kubernetes' own verdict: no progress for `spec.progressDeadlineSeconds`);
- a Deployment that is not available has shown no progress (no change in its generation and updated,
  ready, available or total replicas) for the plan's `progress_deadline_seconds`, or when the plan
  sets none, for the Deployment's own `progressDeadlineSeconds` (Kubernetes' default is 600). This is
  our own clock, so it also catches what Kubernetes does not time out: a rollout that completed and
  then lost its pods, or an edge whose controller sets no conditions;
- a pod of a Deployment that is not available has had a container waiting in `CrashLoopBackOff`,
  `ImagePullBackOff` or `ErrImagePull` for the pod grace (FLEET_ROLLOUT_POD_GRACE_SECONDS), as seen
  by us: a pull that fails once while a registry blinks is not a broken release.

A site is healthy once every Deployment of the release is available at its new generation, and has
stayed so for the plan's `min_success_seconds` (0: at once). A Deployment that becomes unavailable
during that time starts the count again, and is judged by the rules above.

What the verdict needs from earlier polls (when each Deployment last changed, since when each bad pod
has been bad, since when the site has been healthy) is kept in `memory`, a JSON-ready dict the caller
stores with the run (the site run's context), and times are the caller's clock (`now`, seconds since
the epoch): no comparison of our clock with the edge's.
"""

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sites.clusters import DeploymentHealth, PodHealth

# Kubernetes' default spec.progressDeadlineSeconds.
DEFAULT_PROGRESS_DEADLINE = 600
# The kubelet's reasons for a container that will not run without a change: a crash on start, an image
# that cannot be pulled (ErrImagePull on a try, ImagePullBackOff between tries: one condition).
CRASH_LOOP = "CrashLoopBackOff"
IMAGE_PULL = frozenset({"ImagePullBackOff", "ErrImagePull"})
BAD_WAITING = frozenset({CRASH_LOOP, *IMAGE_PULL})

HEALTHY, WAITING, FAILED = "healthy", "waiting", "failed"


@dataclass(frozen=True)
class HealthPolicy:
    """The rules' knobs: the plan's two (from the rollout's plan snapshot) and the settings' two."""

    progress_deadline_seconds: int | None = None  # None: each Deployment's own
    min_success_seconds: int = 0
    pod_grace_seconds: float = 60.0
    # Read pods only once a Deployment has been unavailable this long: a rollout in good health (pods
    # start in seconds) then costs one list of Deployments per poll, as before.
    pods_after_seconds: float = 5.0


@dataclass(frozen=True)
class Verdict:
    state: str  # HEALTHY, WAITING or FAILED
    message: str
    read_pods: bool = False  # ask again with the pods of these namespaces
    namespaces: tuple[str, ...] = ()
    recheck_in: float | None = None  # seconds until a hold (min_success_seconds) ends

    @property
    def healthy(self) -> bool:
        return self.state == HEALTHY

    @property
    def failed(self) -> bool:
        return self.state == FAILED


def clock(moment: float | dt.datetime | None) -> str:
    """A time for a sentence support staff read: `14:02:11 UTC` (the date too when it is not today)."""
    if moment is None:
        return "an unknown time"
    when = moment if isinstance(moment, dt.datetime) else dt.datetime.fromtimestamp(moment, dt.UTC)
    when = when.astimezone(dt.UTC)
    if when.date() != dt.datetime.now(dt.UTC).date():
        return when.strftime("%Y-%m-%d %H:%M:%S UTC")
    return when.strftime("%H:%M:%S UTC")


def _figures(d: DeploymentHealth) -> str:
    return f"{d.available} of {d.replicas} replica(s) available, {d.updated} updated"


def _describe(ref: str, d: DeploymentHealth | None) -> str:
    if d is None:
        return f"Deployment {ref} does not exist yet"
    progressing = d.progressing
    detail = f" (Progressing {progressing.reason})" if progressing is not None and progressing.reason else ""
    return f"Deployment {ref}: {_figures(d)}{detail}"


def assess(
    *,
    wanted: Iterable[tuple[str, str]],
    deployments: Mapping[tuple[str, str], DeploymentHealth],
    pods: Iterable[PodHealth] | None,
    memory: dict[str, Any],
    policy: HealthPolicy,
    now: float,
) -> Verdict:
    """The verdict on the release's Deployments `wanted` ((namespace, name)) from what the site reported
    (`deployments`; `pods` when asked for, else None), updating `memory` (see the module docstring)."""
    watch: dict[str, Any] = memory.setdefault("watch", {})
    failures: list[str] = []
    unhealthy: list[tuple[str, str]] = []
    for key in wanted:
        ns, name = key
        ref, d = f"{ns}/{name}", deployments.get(key)
        if d is not None and d.deadline_exceeded:
            cond = d.progressing
            assert cond is not None  # noqa: S101  # deadline_exceeded says it exists
            failures.append(
                f"Deployment {ref} reports {cond.reason} since {clock(cond.since)}: {cond.message.strip() or '-'} "
                f"({_figures(d)})"
            )
            continue
        if d is not None and d.healthy:
            watch.pop(ref, None)
            continue
        unhealthy.append(key)
        figures = [d.observed_generation, d.updated, d.ready, d.available, d.total] if d else ["missing"]
        seen = watch.get(ref)
        if seen is None or seen[0] != figures:
            watch[ref] = [figures, now]
        since = watch[ref][1]
        own = d.progress_deadline_seconds if d is not None else DEFAULT_PROGRESS_DEADLINE
        deadline = policy.progress_deadline_seconds or own
        if deadline is not None and now - since > deadline:
            whose = (
                "the plan's progress deadline" if policy.progress_deadline_seconds else "its progressDeadlineSeconds"
            )
            state = _figures(d) if d is not None else "it does not exist"
            failures.append(
                f"Deployment {ref} made no progress for {deadline} s ({whose}) since {clock(since)}: {state}"
            )
    if failures:
        return _failed(failures)
    if not unhealthy:
        return _healthy(memory, policy, now)

    memory["healthy_since"] = None
    unhealthy_since = memory.get("unhealthy_since") or now
    memory["unhealthy_since"] = unhealthy_since
    waiting = "; ".join(_describe(f"{ns}/{name}", deployments.get((ns, name))) for ns, name in unhealthy[:3])
    namespaces = tuple(sorted({ns for ns, _ in unhealthy}))
    if pods is None:
        if now - unhealthy_since >= policy.pods_after_seconds:
            return Verdict(WAITING, f"not available yet: {waiting}", read_pods=True, namespaces=namespaces)
        return Verdict(WAITING, f"not available yet: {waiting}")
    failures, bad_pod = _pod_failures(pods, set(unhealthy), memory, policy, now)
    if failures:
        return _failed(failures)
    if bad_pod:
        waiting = f"{waiting}; {bad_pod}"
    return Verdict(WAITING, f"not available yet: {waiting}")


def _pod_failures(
    pods: Iterable[PodHealth],
    unhealthy: set[tuple[str, str]],
    memory: dict[str, Any],
    policy: HealthPolicy,
    now: float,
) -> tuple[list[str], str]:
    """Pods of the unavailable Deployments that have waited on a bad reason past the grace: the failures,
    and a note on the first one still within its grace."""
    before: dict[str, Any] = memory.get("bad_pods") or {}
    bad: dict[str, Any] = {}
    failures, note = [], ""
    for pod in pods:
        deployment = pod.deployment()
        if (pod.namespace, deployment) not in unhealthy:
            continue
        waiting = next((w for w in pod.waiting if w.reason in BAD_WAITING), None)
        if waiting is None:
            continue
        ref = f"{pod.namespace}/{pod.name}"
        kind = "image" if waiting.reason in IMAGE_PULL else waiting.reason
        previous = before.get(ref)
        since = previous[1] if previous and previous[0] == kind else now
        bad[ref] = [kind, since]
        restarts = f", {waiting.restarts} restart(s)" if waiting.restarts else ""
        sentence = (
            f"pod {ref} of Deployment {pod.namespace}/{deployment} is in {waiting.reason} since {clock(since)} "
            f"(container {waiting.container}{restarts}): {waiting.message.strip() or '-'}"
        )
        if now - since >= policy.pod_grace_seconds:
            failures.append(sentence)
        elif not note:
            note = sentence
    memory["bad_pods"] = bad
    return failures, note


def _failed(failures: list[str]) -> Verdict:
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    return Verdict(FAILED, failures[0] + more)


def _healthy(memory: dict[str, Any], policy: HealthPolicy, now: float) -> Verdict:
    memory["unhealthy_since"] = None
    memory["bad_pods"] = {}
    healthy_since = memory.get("healthy_since") or now
    memory["healthy_since"] = healthy_since
    held = now - healthy_since
    if held >= policy.min_success_seconds:
        return Verdict(HEALTHY, "every Deployment of the release is available")
    return Verdict(
        WAITING,
        f"available since {clock(healthy_since)}; counts as succeeded after {policy.min_success_seconds} s "
        "of staying healthy",
        recheck_in=policy.min_success_seconds - held,
    )
