"""`site.decommission`: after the request marked the site decommissioned (sites.site_lifecycle), revoke what
could still reach the control plane or the site's repository, and archive the repository for good.

1. revoke_machines: every node credential (the machines' heartbeats get 401 from then on) and every
   bootstrap token not used yet.
2. revoke_deploy_tokens: the edge's deploy tokens of the site's project on the git host (a clone with one
   fails from then on).
3. archive_project: the project becomes read-only on the git host; never deleted (the repository's history
   is the site's change log). A project that is not edgefleet's (no marker naming the site) is left alone.

Each step is idempotent, audited, and its failures reach the timeline as the git host's sentence
(sites.workflows.site_common); a retry of the run continues from the step that failed.
"""

import datetime as dt
from typing import Any

from django.db import transaction
from django.utils import timezone

from fleet.audit.choices import Source
from fleet.audit.services import audit_record
from fleet.workflows import Done, Fail, Outcome, Workflow, WorkflowRun, register
from sites import devices
from sites.choices import DECOMMISSION_KIND, SiteState
from sites.githost import ProjectConflict, git_host
from sites.models import BootstrapToken, Node
from sites.workflows.common import actor_of, db_step, io_step, step_timeout
from sites.workflows.site_common import site_flow_step, subject_site

DECOMMISSION = DECOMMISSION_KIND


@site_flow_step
def decommission_revoke_machines(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    site = subject_site(run)
    if site.state != SiteState.DECOMMISSIONED:
        return Fail(f"site {site.code} is {site.state}, not decommissioned: nothing is revoked")
    reason = f"site {site.code} decommissioned: {ctx.get('reason', '')}"[:500]
    actor = actor_of(run)
    with transaction.atomic():
        credentials = sum(
            devices.node_credentials_revoke(node=node, actor=actor, source=Source.WORKFLOW, reason=reason)
            for node in Node.objects.filter(site=site, credentials__revoked_at__isnull=True).distinct()
        )
        unused = BootstrapToken.objects.filter(
            site=site, revoked_at__isnull=True, used_at__isnull=True, expires_at__gt=timezone.now()
        )
        tokens = [devices.bootstrap_token_revoke(token=token, actor=actor, source=Source.WORKFLOW) for token in unused]
    return Done({"revoked": {"node_credentials": credentials, "bootstrap": [t.prefix for t in tokens]}})


@site_flow_step
def decommission_revoke_deploy_tokens(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    site = subject_site(run)
    revoked = git_host().revoke_deploy_tokens(site.code)
    if revoked:
        audit_record(
            actor=actor_of(run),
            verb="revoke_deploy_tokens",
            obj=site,
            source=Source.WORKFLOW,
            payload={"deploy_tokens": revoked, "reason": "decommissioned"},
        )
    return Done({"deploy_tokens_revoked": revoked})


@site_flow_step
def decommission_archive_project(run: WorkflowRun, ctx: dict[str, Any]) -> Outcome:
    site = subject_site(run)
    try:
        project = git_host().archive_project(site.code)
    except ProjectConflict as exc:
        return Done({"archived": False, "note": f"left as it is: {exc.message}"})
    if project is None:
        return Done({"archived": False, "note": f"site {site.code} has no project on the git host"})
    audit_record(
        actor=actor_of(run), verb="archive_project", obj=site, source=Source.WORKFLOW, payload={"project": project.path}
    )
    return Done({"archived": True, "project": project.path})


DECOMMISSION_WORKFLOW = register(
    Workflow(
        kind=DECOMMISSION,
        steps=[
            db_step("revoke_machines", decommission_revoke_machines),
            io_step("revoke_deploy_tokens", decommission_revoke_deploy_tokens, timeout=max(step_timeout(), 120.0)),
            io_step("archive_project", decommission_archive_project, timeout=max(step_timeout(), 120.0)),
        ],
        deadline=dt.timedelta(days=7),
        exclusive=True,
        description="revoke node credentials, bootstrap tokens and deploy tokens; archive the project",
    )
)
