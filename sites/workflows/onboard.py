"""`site.onboard`: a site gets its project on the git host, the base stack as its first commit, its machines
their provisioning runs, its edge pointed at the project with a deploy token, and becomes `active` once it
reports the base stack applied (planned -> provisioning -> active; an active site is adopted as it is).

Steps, each checking the world before acting, so a re-run (a retry of the run, or a new request) continues
where the last one stopped and never creates anything twice:

1. begin: planned -> provisioning.
2. project: `ensure_project` on the git host (created or adopted, protected; left empty, see 3); the site's
   repo_url becomes the project's clone URL (checked by the git policy like any repo_url).
3. base_stack: the base stack (rendered by the rollouts app, sites.base_stack) and the marker file
   `.edgefleet/site` written as one commit (none when the tree already holds them).
4. first_boot: the first bootstrap token (issued by the request, shown once there) is checked; each
   pre-registered machine gets a `node.provision` run, so it goes active once it has joined.
5. point_edge: once the site's cluster answers (days are fine: a stored wait), as `flux bootstrap` does:
   a deploy token of the project in the Secret `site-git` (flux-system, never in git; a new one only when
   the Secret holds none that is still valid, the others revoked after it is in place), and the
   GitRepository `site` pointed at the project.
6. await_applied: the edge reads its project (GitRepository Ready) and reports the base-stack commit (or a
   later head) applied (the Kustomization `site`: the sync contract).
7. activate: provisioning -> active.

The git host's, the repository's and the cluster's answers become outcomes in sites.workflows.site_common.
"""

import datetime as dt
from typing import Any

from fleet.audit.choices import Source
from fleet.audit.services import audit_record
from fleet.errors import Invalid
from fleet.workflows import Done, Fail, Outcome, Wait, Workflow, WorkflowRun, active_run, register
from sites import services
from sites.base_stack import EDGE_NAMESPACE, OWNED_PREFIX, base_stack_for, edge_repo_url, edge_secret_name
from sites.choices import ONBOARD_KIND, NodeState, SiteState
from sites.clusters import SiteCluster
from sites.githost import GitHost, git_host
from sites.githost.base import MARKER_PATH, MARKER_TRAILER, marker_content
from sites.models import BootstrapToken, Node, Site
from sites.repos import Author, SiteRepo
from sites.workflows.common import actor_of, db_step, io_step, step_timeout
from sites.workflows.site_common import site_flow_step, site_poll, subject_site

ONBOARD = ONBOARD_KIND
TOKEN_ID_ANNOTATION = "edgefleet.io/deploy-token-id"  # noqa: S105 - an annotation key
MANAGED_BY = {"app.kubernetes.io/managed-by": "edgefleet"}
BASE_STACK_TRAILER = "Edgefleet-Base-Stack"


@site_flow_step
def onboard_begin(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    site = subject_site(run)
    if site.state == SiteState.DECOMMISSIONED:
        return Fail(f"site {site.code} is decommissioned; it is not onboarded")
    before = site.state
    if site.state == SiteState.PLANNED:
        services.site_transition(
            site=site,
            to=SiteState.PROVISIONING,
            actor=actor_of(run),
            source=Source.WORKFLOW,
            reason=f"onboarding (run {run.pk})",
        )
    return Done({"state_before": ctx.get("state_before", before)})


@site_flow_step
def onboard_project(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    site = subject_site(run)
    project = git_host().ensure_project(site.code, mark=False)
    if site.repo_url != project.clone_url:
        try:
            services.site_update(site=site, actor=actor_of(run), source=Source.WORKFLOW, repo_url=project.clone_url)
        except Invalid as exc:
            return Fail(
                f"the project {project.path} is ready, but its clone URL {project.clone_url} cannot become the "
                f"repository of site {site.code}: {exc.message}"
            )
    shown = {"path": project.path, "clone_url": project.clone_url, "web_url": project.web_url, "id": project.id}
    return Done({"project": {**shown, "changes": list(project.changes), "previous_repo_url": site.repo_url}})


@site_flow_step
def onboard_base_stack(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    site = subject_site(run)
    stack = base_stack_for(site)
    files = {MARKER_PATH: marker_content(site.code), **stack.files}
    message = (
        f"Base stack {stack.version} for site {site.code}\n\n"
        f"Written by onboarding (workflow run {run.pk}): the edge's source and sync, the log and metrics agents,\n"
        f"the kube-system namespace policy.\n\n{MARKER_TRAILER}: {site.code}\n{BASE_STACK_TRAILER}: {stack.version}\n"
    )
    result = SiteRepo.for_site(site).write(files, owned_prefix=OWNED_PREFIX, message=message, author=_author(run))
    base = {"version": stack.version, "release": stack.release_id, "revision": result.revision}
    return Done({"base_stack": {**base, "committed": result.changed}})


def _author(run: WorkflowRun) -> Author:
    return Author.of(run.created_by or run.created_by_repr or "edgefleet")


@site_flow_step
def onboard_first_boot(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    """The token the request issued (still usable?), and a provisioning run for every machine waiting."""
    from sites import lifecycle  # lifecycle imports this package for the kinds

    site = subject_site(run)
    issued = ctx.get("first_boot") or {}
    token = BootstrapToken.objects.filter(pk=int(issued["id"])).first() if issued.get("id") else None
    provisioning: dict[str, int] = {}
    for node in Node.objects.filter(site=site, state=NodeState.PREREGISTERED).order_by("serial"):
        running = active_run(node)
        if running is None:
            running = lifecycle.node_provision_request(node=node, actor=actor_of(run), source=Source.WORKFLOW)
        provisioning[node.serial] = running.pk
    first_boot = {**issued, "state": token.state if token else "none issued"}
    return Done({"first_boot": first_boot, "provisioning": provisioning})


@site_flow_step
def onboard_point_edge(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    site = subject_site(run)
    cluster = SiteCluster.for_cluster(site.cluster)
    host = git_host()
    secret = edge_secret_name()
    key_id = _edge_credentials(run, site, cluster, host, secret) if secret else None
    url = edge_repo_url(site.code)
    repointed = cluster.point_git_source(url=url, secret_name=secret)
    return Done({"edge": {"url": url, "secret": secret, "deploy_key_id": key_id, "repointed": repointed}})


def _edge_credentials(run: WorkflowRun, site: Site, cluster: SiteCluster, host: GitHost, secret: str) -> int | None:
    """The id of the deploy token in the edge's Secret: the one there if the git host still honours it,
    else a new one put there; every other active deploy token of ours is revoked once it is in place."""
    annotations = cluster.secret_annotations(EDGE_NAMESPACE, secret)
    active = {t.id for t in host.deploy_tokens(site.code) if t.ours and t.active}
    current = _int((annotations or {}).get(TOKEN_ID_ANNOTATION))
    if current is None or current not in active:
        token = host.issue_deploy_token(site.code)
        if token is None:
            return None
        values = {"username": token.username, "password": token.token}
        annotations = {TOKEN_ID_ANNOTATION: str(token.id)}
        cluster.put_secret(EDGE_NAMESPACE, secret, values=values, annotations=annotations, labels=MANAGED_BY)
        audit_record(
            actor=actor_of(run),
            verb="issue_deploy_token",
            obj=site,
            source=Source.WORKFLOW,
            payload={"deploy_token": token.id, "expires_at": token.expires_at.isoformat() if token.expires_at else ""},
        )
        current, active = token.id, active | {token.id}
    if active - {current}:
        revoked = host.revoke_deploy_tokens(site.code, keep=current)
        if revoked:
            payload = {"deploy_tokens": revoked, "kept": current}
            audit_record(
                actor=actor_of(run), verb="revoke_deploy_tokens", obj=site, source=Source.WORKFLOW, payload=payload
            )
    return current


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@site_flow_step
def onboard_await_applied(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    site = subject_site(run)
    revision = str((ctx.get("base_stack") or {}).get("revision") or "")
    cluster = SiteCluster.for_cluster(site.cluster)
    source = cluster.git_source()
    url = edge_repo_url(site.code)
    machines = _machines(site)
    if source is None or source.url != url:
        where = f"reads {source.url}" if source is not None else "has no GitRepository `site`"
        return Wait(site_poll(ctx), f"the edge of {site.code} {where}, not its project {url}; waiting ({machines})")
    if source.ready is False:
        return Wait(
            site_poll(ctx),
            f"the edge of {site.code} cannot read its project: {source.message or source.reason}; waiting ({machines})",
        )
    status = cluster.sync_status()
    if status is not None and status.ready is True and revision:
        if status.applied(revision):
            return Done({"applied": revision})
        head = SiteRepo.for_site(site).head()
        if head and status.applied(head):  # a later commit (a rollout) that holds the base stack too
            return Done({"applied": head})
    if status is None:
        detail = "it has no Kustomization `site` yet"
    elif status.failed_at(revision):
        detail = f"it tried and reports: {status.message or status.reason}"
    else:
        detail = f"it applied {status.last_applied_revision or 'nothing yet'}"
    return Wait(
        site_poll(ctx), f"waiting for {site.code} to apply the base stack ({revision[:10]}): {detail} ({machines})"
    )


def _machines(site: Site) -> str:
    states = list(Node.objects.filter(site=site).exclude(state=NodeState.RETIRED).values_list("state", flat=True))
    up = sum(1 for state in states if state == NodeState.ACTIVE)
    return f"{up} of {len(states)} machines active"


@site_flow_step
def onboard_activate(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    site = subject_site(run)
    applied = str(ctx.get("applied") or "")
    if site.state in (SiteState.PLANNED, SiteState.PROVISIONING):
        site = services.site_transition(
            site=site,
            to=SiteState.ACTIVE,
            actor=actor_of(run),
            source=Source.WORKFLOW,
            reason=f"onboarded: the base stack is applied at {applied[:10]}",
        )
    return Done({"state": site.state})


def _io(name: str, fn: Any) -> Any:
    # Git host calls (each with its own timeout and retries), a render, a push: more than a node poll needs.
    return io_step(name, fn, timeout=max(step_timeout(), 120.0))


ONBOARD_WORKFLOW = register(
    Workflow(
        kind=ONBOARD,
        steps=[
            db_step("begin", onboard_begin),
            _io("project", onboard_project),
            _io("base_stack", onboard_base_stack),
            db_step("first_boot", onboard_first_boot),
            _io("point_edge", onboard_point_edge),
            io_step("await_applied", onboard_await_applied),
            db_step("activate", onboard_activate),
        ],
        deadline=dt.timedelta(days=30),
        exclusive=True,
        description="git host project, base-stack commit, machines provisioning, edge pointed, applied: active",
    )
)
