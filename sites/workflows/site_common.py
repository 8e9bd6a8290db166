"""What the site workflows (`site.onboard`, `site.decommission`) share: the run's site, and the answers of
the git host, the site's repository and its cluster as outcomes, declared once (`site_flow_step`).

The git host's errors carry `transient` and `retry_after` (sites.githost.errors) and a sentence a support
person understands; the mapping keeps that sentence as the timeline's message:

- unavailable (429, 5xx after python-gitlab's own retries, a timeout, unreachable): retried with the
  engine's backoff (after the host's Retry-After when it named one) for GIT_HOST_RETRIES attempts, then
  a Wait of the site poll, and so on, so an outage of hours costs nothing and the run's deadline bounds it;
- refused (401/403 token expired or lacking a role, 404 group missing, a project that is not ours, any
  other refusal): the run fails with the sentence; once someone fixed the cause, a retry of the run goes on
  from that step (every step checks the world first, so nothing is done twice or left half-done);
- the repository: unavailable is a Retry, refused a Fail; the cluster: not configured yet or unreachable is
  a Wait (a new site's machines may arrive days later), a refusal a Fail.
"""

from typing import Any

from django.conf import settings

from fleet.errors import FleetError
from fleet.workflows import Fail, Outcome, Retry, Wait, WorkflowRun, errors_as_outcomes, subject_or_stop
from sites.base_stack import BaseStackUnavailable
from sites.clusters import ClusterError, ClusterNotConfigured, ClusterRefused, ClusterUnavailable
from sites.githost import GitHostError, GitHostUnavailable
from sites.models import Site
from sites.repos import RepoError, RepoUnavailable

# Attempts of a step against an unavailable git host before it waits a site poll instead (a Wait starts
# the count again, so the pattern repeats until the host answers or the run's deadline passes).
GIT_HOST_RETRIES = 3


def site_poll(ctx: dict[str, Any]) -> float:
    """How long a waiting step waits (FLEET_ONBOARD_POLL_SECONDS, fixed in the run's context at start)."""
    return float(ctx.get("poll", settings.FLEET_ONBOARD_POLL_SECONDS))


def subject_site(run: WorkflowRun) -> Site:
    return subject_or_stop(run, Site.objects.select_related("cluster"))


def _git_host_unavailable(run: WorkflowRun, ctx: dict[str, Any], exc: GitHostUnavailable) -> Outcome:
    if run.attempt < GIT_HOST_RETRIES:
        return Retry(exc.message, after=exc.retry_after)
    wait = max(site_poll(ctx), exc.retry_after or 0.0)
    return Wait(wait, f"{exc.message}; trying again in {wait:g} s")


def _cluster_waits(run: WorkflowRun, ctx: dict[str, Any], exc: ClusterError) -> Outcome:
    if isinstance(exc, ClusterNotConfigured):
        site = run.subject_repr or "the site"
        return Wait(
            site_poll(ctx),
            f"the cluster of {site} has no API address or credentials yet (they are set once its server is "
            f"installed: PUT sites/{site}/cluster/); waiting",
        )
    if exc.status in (409, 429):
        return Retry(f"the site's cluster is busy: {exc}", after=exc.retry_after)
    return Wait(site_poll(ctx), f"the site's cluster does not answer ({exc}); waiting for it")


def _refused(run: WorkflowRun, ctx: dict[str, Any], exc: Exception) -> Outcome:
    return Fail(getattr(exc, "message", "") or str(exc))


site_flow_step = errors_as_outcomes(
    {
        GitHostUnavailable: _git_host_unavailable,
        GitHostError: _refused,
        RepoUnavailable: Retry,
        RepoError: Fail,
        (ClusterUnavailable, ClusterNotConfigured): _cluster_waits,
        ClusterRefused: lambda run, ctx, exc: Fail(f"the site's cluster refused: {exc}"),
        ClusterError: Retry,
        BaseStackUnavailable: _refused,
        FleetError: _refused,
    }
)
