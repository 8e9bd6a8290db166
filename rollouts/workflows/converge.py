"""What a site run's converge step reads from the site, and the sentences it writes for people.

`sync_status` reads the edge GitOps agent's status (the Flux Kustomization contract); `judge` reads
the release's Deployments, one list per namespace per poll, and their pods only when rollouts.health
asks for them (a Deployment unavailable for a few seconds), and returns the health verdict. Both
record in the run's context what later decisions need: `reached_at` (the site answered after the
push: it will be judged, not skipped), `unreachable_since`, `last_status` (what the driver quotes if
the site deadline passes) and the health rules' memory. The adapter's errors are the steps' to turn
into outcomes (rollouts.workflows.common.site_step, which uses `unreachable`).
"""

import datetime as dt
import time
from typing import Any

from django.conf import settings
from django.utils import timezone

from fleet.audit.choices import Source, SystemActor
from fleet.workflows import Wait
from rollouts import services
from rollouts.choices import SiteRolloutState
from rollouts.health import HealthPolicy, Verdict, assess, clock
from rollouts.models import SiteRollout
from sites.clusters import ClusterNotConfigured, SiteCluster, SyncStatus, revision_sha
from sites.messages import cluster_problem
from sites.models import Cluster
from sites.repos import SiteRepo

# How often a site run polls the edge's sync status and workload health (FLEET_ROLLOUT_SYNC_POLL_SECONDS).
SYNC_POLL_SECONDS = float(getattr(settings, "FLEET_ROLLOUT_SYNC_POLL_SECONDS", 1.0))
# How long a pod of the release may wait in CrashLoopBackOff / ImagePullBackOff / ErrImagePull before
# its site fails (as seen by us: a registry that blinks once is not a broken release).
POD_GRACE_SECONDS = float(getattr(settings, "FLEET_ROLLOUT_POD_GRACE_SECONDS", 60.0))


def sync_status(row: SiteRollout, ctx: dict[str, Any] | None = None) -> SyncStatus | None:
    """The edge agent's status (None while it reports none), recording in `ctx` that the site answered."""
    status = cluster_of(row).sync_status()
    answered(ctx)
    return status


def cluster_of(row: SiteRollout) -> SiteCluster:
    """The adapter for the site's cluster; ClusterNotConfigured (a refusal) when none is recorded."""
    try:
        cluster = row.site.cluster
    except Cluster.DoesNotExist:
        raise ClusterNotConfigured(f"site {row.site.code} has no cluster recorded") from None
    return SiteCluster.for_cluster(cluster)


def answered(ctx: dict[str, Any] | None) -> None:
    """The site answered after our push: it is reached, so it will be judged (failed), not skipped."""
    if ctx is not None:
        ctx.setdefault("reached_at", timezone.now().isoformat())
        ctx.pop("unreachable_since", None)


def unreachable(ctx: dict[str, Any], exc: Exception, *, api_url: str = "") -> Wait:
    """Look again later, saying since when the site has not answered, in a sentence for people
    (sites.messages: "cannot reach the cluster at 10.2.3.4:6443 (connection refused)"); the raw error
    stays in the step's error for engineers."""
    since = ctx.setdefault("unreachable_since", time.time())
    message = f"waiting: unreachable since {clock(since)}: {cluster_problem(exc, api_url=api_url).what}"
    ctx["last_status"] = message
    return Wait(SYNC_POLL_SECONDS * 5, message)


def mark_unreachable(row: SiteRollout | None, ctx: dict[str, Any], message: str) -> None:
    """Record on the site that it does not answer (`unreachable`, counted apart from syncing), keeping in
    `ctx` where it was so that it goes back there when it answers again."""
    if row is None or row.state not in (SiteRolloutState.SYNCING, SiteRolloutState.VERIFYING):
        return
    ctx["unreachable_from"] = row.state
    services.site_rollout_transition(
        site_rollout=row,
        to=SiteRolloutState.UNREACHABLE,
        actor=SystemActor.ROLLOUT,
        source=Source.WORKFLOW,
        error=message,
    )
    row.state = SiteRolloutState.UNREACHABLE


def reachable_again(row: SiteRollout, ctx: dict[str, Any]) -> None:
    """The site answered: back to the state it was in when it stopped answering (its sentence cleared)."""
    if row.state != SiteRolloutState.UNREACHABLE:
        return
    back = ctx.pop("unreachable_from", SiteRolloutState.SYNCING)
    services.site_rollout_transition(
        site_rollout=row, to=back, actor=SystemActor.ROLLOUT, source=Source.WORKFLOW, error=""
    )
    row.state = back


def phase(row: SiteRollout, ctx: dict[str, Any]) -> str:
    """Where the site is in converging: syncing or verifying (an unreachable site: where it was)."""
    if row.state == SiteRolloutState.UNREACHABLE:
        return str(ctx.get("unreachable_from") or SiteRolloutState.SYNCING)
    return row.state


def waiting(ctx: dict[str, Any], seconds: float, message: str) -> Wait:
    """Look again in `seconds`; `message` is also what the driver quotes if the site deadline passes."""
    ctx["last_status"] = message
    return Wait(seconds, message)


def applied_later(row: SiteRollout, ctx: dict[str, Any], status: SyncStatus, sha: str) -> bool:
    """The edge applied a later commit that includes ours: another writer (a rollout of another
    application, a person) pushed on top of ours before the agent synced, and Flux applies the head, never
    each commit on the way, so it will never name ours. Asked of git once per applied revision."""
    applied = revision_sha(status.last_applied_revision)
    if status.ready is not True or not applied or applied == sha:
        return False
    if applied in (ctx.get("previous"), ctx.get("not_after_ours")):  # the usual case: not synced ours yet
        return False
    if SiteRepo.for_site(row.site).contains(sha, applied):
        return True
    ctx["not_after_ours"] = applied  # an older head (the agent has not fetched ours yet): not again
    return False


def sync_failure(row: SiteRollout, status: SyncStatus, sha: str) -> str:
    """The agent's failure to apply our commit as a sentence: where, what, since when, its message."""
    try:
        since = clock(dt.datetime.fromisoformat(status.since)) if status.since else "an unknown time"
    except ValueError:
        since = status.since
    return (
        f"the GitOps agent at {row.site.code} reports {status.reason or 'a failure'} applying {sha[:12]} "
        f"since {since}: {status.message or 'no message'}"
    )


def judge(row: SiteRollout, ctx: dict[str, Any]) -> Verdict:
    """Read the release's Deployments (one list per namespace), and their pods only when the rules ask
    for them, and give the verdict of rollouts.health."""
    wanted = [(str(ns), str(name)) for ns, name in ctx.get("deployments") or []]
    policy = HealthPolicy(
        progress_deadline_seconds=ctx.get("progress_deadline_seconds") or None,
        min_success_seconds=int(ctx.get("min_success_seconds") or 0),
        pod_grace_seconds=POD_GRACE_SECONDS,
        pods_after_seconds=min(5.0, POD_GRACE_SECONDS),
    )
    memory = ctx.setdefault("health", {})
    now = time.time()
    cluster = cluster_of(row)
    found = {}
    for namespace in sorted({ns for ns, _ in wanted}):
        found.update({(namespace, d.name): d for d in cluster.deployments(namespace)})
    verdict = assess(wanted=wanted, deployments=found, pods=None, memory=memory, policy=policy, now=now)
    if verdict.read_pods:
        pods = [pod for namespace in verdict.namespaces for pod in cluster.pod_health(namespace)]
        verdict = assess(wanted=wanted, deployments=found, pods=pods, memory=memory, policy=policy, now=now)
    if wanted:
        answered(ctx)
    return verdict
