"""The doors of the site workflows: onboard a site (`site.onboard`) and decommission it (`site.decommission`).

Admin (buttons on the site's page, the list's decommission action), API (`POST sites/{code}/onboard/`,
`POST sites/{code}/decommission/`, 202 with the run) and `fleet_import --onboard` call these. Both kinds are
exclusive per site: a second request while one runs is a 409 naming it.

Onboarding needs `sites.onboard_site`. Its request issues the site's first bootstrap token for the machines
pre-registered there (bound to their serials, shown once in the answer: the plaintext goes on the boxes'
boot media and is stored nowhere), in the transaction that starts the run; the run does the rest (git host
project, base-stack commit, provisioning runs for those machines, the edge pointed at its project, the
wait for the base stack applied, `active`).

Decommissioning is final, so like a wipe it needs its own permission (`sites.decommission_site`, checked
here too), a reason and the site's code typed to confirm. The request marks the site decommissioned at
once (rollouts leave it out, it takes no machines, its bootstrap tokens stop working), audited with the
person; the run revokes what could still reach the site's repository or the control plane: every node
credential and unused bootstrap token, the edge's deploy tokens, and archives the project (never deletes).
"""

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from fleet.audit.choices import Source
from fleet.audit.services import Actor, audit_record
from fleet.errors import Conflict, FleetError, Invalid
from fleet.permissions import require_perm
from fleet.workflows import RunState, WorkflowRun, active_run, runs_of
from fleet.workflows import start as workflow_start
from sites import devices, services
from sites.choices import DECOMMISSION_KIND, ONBOARD_KIND, SiteState
from sites.models import BootstrapToken, Node, Site

ONBOARD_PERMISSION = "sites.onboard_site"
DECOMMISSION_PERMISSION = "sites.decommission_site"


@dataclass(frozen=True)
class FirstBootToken:
    """The bootstrap token an onboarding request issued, with its plaintext (shown once, stored nowhere)."""

    token: BootstrapToken
    plaintext: str


@dataclass(frozen=True)
class OnboardRequest:
    run: WorkflowRun
    first_boot: FirstBootToken | None


def _refuse_if_busy(site: Site) -> None:
    running = active_run(site)
    if running is not None:
        step = f" at step {running.current_step}" if running.current_step else ""
        raise Conflict(
            f"{running.kind} run {running.pk} is {running.state}{step} on site {site.code}: one site workflow at a "
            "time (cancel it first, or wait for it)",
            field="workflow",
        )


def _deadline(kind: str) -> dt.datetime | None:
    """A Django setting FLEET_SITE_RUN_DEADLINES = {"site.onboard": seconds, ...} (tests, rehearsals)
    overrides a kind's default deadline, as FLEET_NODE_RUN_DEADLINES does for the node workflows."""
    seconds = (getattr(settings, "FLEET_SITE_RUN_DEADLINES", None) or {}).get(kind)
    return timezone.now() + dt.timedelta(seconds=float(seconds)) if seconds else None


def site_onboard_request(*, site: Site, actor: Actor, source: Source) -> OnboardRequest:
    """Start `site.onboard` for a site that is not decommissioned (a planned one moves to provisioning,
    then active; an active one is adopted and stays active). Issues the first bootstrap token for the
    machines waiting to register there, if any.

    Forbidden without `sites.onboard_site`; Conflict for a decommissioned site, while another site workflow
    runs, or with local repositories in production (FLEET_GIT_HOST=gitlab is needed there).
    """
    require_perm(actor, ONBOARD_PERMISSION)
    if settings.PRODUCTION and settings.FLEET_GIT_HOST != "gitlab":
        raise Conflict(
            "onboarding needs a git host in production (FLEET_GIT_HOST=gitlab): local repositories are only for "
            "the embedded set-up",
            field="git_host",
        )
    with transaction.atomic():
        site = Site.objects.select_for_update().get(pk=site.pk)
        if site.state == SiteState.DECOMMISSIONED:
            raise Conflict(f"site {site.code} is decommissioned; it cannot be onboarded again", field="state")
        _refuse_if_busy(site)
        first_boot = _first_boot_token(site, actor, source)
        context: dict[str, Any] = {"poll": settings.FLEET_ONBOARD_POLL_SECONDS}
        if first_boot is not None:
            token = first_boot.token
            context["first_boot"] = {
                "id": token.pk,
                "prefix": token.prefix,
                "serials": token.serials,
                "expires_at": token.expires_at.isoformat(),
            }
        run = workflow_start(
            kind=ONBOARD_KIND,
            subject=site,
            actor=actor,
            source=source,
            context=context,
            deadline=_deadline(ONBOARD_KIND),
        )
        payload = {"run": run.pk, "first_boot": context.get("first_boot", {}).get("prefix", "")}
        audit_record(actor=actor, verb="onboard_request", obj=site, source=source, payload=payload)
    return OnboardRequest(run=run, first_boot=first_boot)


def _first_boot_token(site: Site, actor: Actor, source: Source) -> FirstBootToken | None:
    """A token for the site's machines waiting to register (none waiting: no token)."""
    if not Node.objects.filter(site=site, state__in=devices.REGISTRABLE_STATES).exists():
        return None
    token, plaintext = devices.bootstrap_token_issue(
        site=site, actor=actor, source=source, note="first boot of the site's machines (onboarding)"
    )
    return FirstBootToken(token=token, plaintext=plaintext)


def site_decommission_request(*, site: Site, actor: Actor, source: Source, reason: str, confirm: str) -> WorkflowRun:
    """Decommission a site (needs sites.decommission_site; final: the state machine has no way back) and
    start `site.decommission`, which revokes the node credentials, bootstrap tokens and the edge's deploy
    tokens and archives the site's project on the git host.

    `confirm` must be the site's code (Invalid naming `confirm`); a reason is required (Invalid naming
    `reason`). Conflict when it is already decommissioned (naming a failed run to retry, if there is one)
    or while another site workflow runs.
    """
    require_perm(actor, DECOMMISSION_PERMISSION)
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("a reason is required", field="reason")
    if (confirm or "").strip() != site.code:
        raise Invalid(f"type the site's code ({site.code}) to confirm", field="confirm")
    with transaction.atomic():
        site = Site.objects.select_for_update().get(pk=site.pk)
        if site.state == SiteState.DECOMMISSIONED:
            raise Conflict(_already_decommissioned(site), field="state")
        _refuse_if_busy(site)
        audit_record(actor=actor, verb="decommission_request", obj=site, source=source, payload={"reason": reason})
        services.site_transition(site=site, to=SiteState.DECOMMISSIONED, actor=actor, source=source, reason=reason)
        return workflow_start(
            kind=DECOMMISSION_KIND,
            subject=site,
            actor=actor,
            source=source,
            context={"reason": reason, "poll": settings.FLEET_ONBOARD_POLL_SECONDS},
            deadline=_deadline(DECOMMISSION_KIND),
        )


def _already_decommissioned(site: Site) -> str:
    failed = runs_of(site).filter(kind=DECOMMISSION_KIND, state=RunState.FAILED).first()
    if failed is None:
        return f"site {site.code} is already decommissioned"
    return (
        f"site {site.code} is already decommissioned, but its {failed.kind} run {failed.pk} failed at step "
        f"{failed.current_step}: {failed.error}; retry that run (POST workflow-runs/{failed.pk}/retry/) once the "
        "cause is fixed"
    )


def sites_onboard_imported(*, sites: list[Site], actor: Actor, source: Source) -> dict[str, str]:
    """Onboard the sites an import listed (`fleet_import --onboard`), skipping those onboarded already or
    being onboarded: `{code: "run <id>" | "onboarded" | "busy: ..." | "decommissioned" | "refused: ..."}`.
    A token issued for waiting machines is in the answer once (`run <id>, first boot token ...: <plaintext>`)."""
    outcome: dict[str, str] = {}
    for site in sites:
        if site.state == SiteState.DECOMMISSIONED:
            outcome[site.code] = "decommissioned"
            continue
        if runs_of(site).filter(kind=ONBOARD_KIND, state=RunState.SUCCEEDED).exists():
            outcome[site.code] = "onboarded"
            continue
        running = active_run(site)
        if running is not None:
            outcome[site.code] = f"busy: {running.kind} run {running.pk} is {running.state}"
            continue
        try:
            request = site_onboard_request(site=site, actor=actor, source=source)
        except FleetError as exc:
            outcome[site.code] = f"refused: {exc.message}"
            continue
        shown = f"run {request.run.pk}"
        if request.first_boot is not None:
            serials = ", ".join(request.first_boot.token.serials)
            shown += f", first boot token for {serials}: {request.first_boot.plaintext}"
        outcome[site.code] = shown
    return outcome
