"""Sites: create, describe, move through their states, delete, probe."""

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from fleet.audit.choices import Source
from fleet.audit.services import Actor, audit_record, field_values
from fleet.errors import Conflict, Invalid
from fleet.transitions import StateMachine, state_transition
from fleet.updates import model_delete, model_update
from fleet.validation import full_clean_or_invalid
from sites import health_records, probing, tasks
from sites.choices import SITE_MANUAL_TRANSITIONS, SITE_TRANSITIONS, SiteState
from sites.models import Cluster, Site
from sites.validators import validate_repo_url

# What a person or an import may set on a site (service, API serializer, admin form): the code is set
# once at creation, the state changes by transition.
SITE_FIELDS = ("name", "region", "timezone", "labels", "business_hours", "maintenance_windows", "repo_url")

SITE_MACHINE: StateMachine[Site] = StateMachine(
    table=SITE_TRANSITIONS, states=SiteState.values, kind="site", subject=lambda site: f"site {site.code}"
)


def site_create(*, actor: Actor, source: Source, code: str, **fields: Any) -> Site:
    """Create a site (state `planned` unless given). Raises Invalid for bad fields or a duplicate code."""
    unknown = set(fields) - set(SITE_FIELDS) - {"state"}
    if unknown:
        raise Invalid(f"unknown site fields: {', '.join(sorted(unknown))}")
    if "repo_url" in fields:
        fields["repo_url"] = _clean_repo_url(fields["repo_url"])
    site = Site(code=code, **fields)
    full_clean_or_invalid(site)
    with transaction.atomic():
        if Site.objects.filter(code=code).exists():
            raise Invalid(f"a site with code {code} already exists", field="code")
        site.save()
        cluster = Cluster.objects.create(site=site)
        audit_record(actor=actor, verb="create", obj=site, source=source, payload=field_values(site, SITE_FIELDS))
        health_records.site_health_refresh(site=site)
    site.cluster = cluster
    return site


def site_update(*, site: Site, actor: Actor, source: Source, **changes: Any) -> Site:
    """Change a site's descriptive fields. State changes go through site_transition; the code never changes."""
    if "code" in changes and changes["code"] != site.code:
        raise Invalid("a site's code cannot be changed", field="code")
    changes.pop("code", None)
    if "repo_url" in changes and changes["repo_url"] != site.repo_url:
        # Only a new value is checked: a site whose host has since left FLEET_GIT_HOSTS can still be
        # renamed (SiteRepo refuses to use the old URL all the same).
        changes["repo_url"] = _clean_repo_url(changes["repo_url"])
    return model_update(site, changes=changes, fields=SITE_FIELDS, kind="site", actor=actor, source=source)


def _clean_repo_url(value: Any) -> str:
    """The canonical repo_url, or Invalid naming `repo_url`: checked on write, again by SiteRepo at use."""
    try:
        return validate_repo_url(value)
    except ValidationError as exc:
        raise Invalid(f"repo_url: {exc.messages[0]}", errors={"repo_url": exc.messages}) from exc


def site_transition(*, site: Site, to: str, actor: Actor, source: Source, reason: str = "") -> Site:
    """Move a site to another state if SITE_TRANSITIONS allows it; raise Conflict naming the current state."""
    return state_transition(
        site, to=to, machine=SITE_MACHINE, actor=actor, source=source, reason=reason, after=_site_moved
    )


def _site_moved(site: Site, before: str) -> None:
    health_records.site_health_refresh(site=site)  # in service or not


def site_set_state(*, site: Site, to: str, actor: Actor, source: Source, reason: str = "") -> Site:
    """A person's plain change of a site's state (API PATCH `state`, the admin's state field): any move of
    SITE_TRANSITIONS except decommissioning, which needs its own door (Invalid naming `state` pointing there)."""

    def manual_only(locked: Site) -> None:
        if to not in SITE_MANUAL_TRANSITIONS[locked.state]:
            raise Invalid(
                f"site {locked.code} is decommissioned only through the decommission action "
                f"(POST sites/{locked.code}/decommission/ or the admin's action: the sites.decommission_site "
                "permission, a reason and the site's code typed to confirm), not by changing its state",
                field="state",
            )

    return state_transition(
        site,
        to=to,
        machine=SITE_MACHINE,
        actor=actor,
        source=source,
        reason=reason,
        check=manual_only,
        after=_site_moved,
    )


def site_delete(*, site: Site, actor: Actor, source: Source) -> None:
    """Delete a site that never had machines. A site with nodes is decommissioned, not deleted."""

    def without_machines(row: Site) -> None:
        if row.nodes.exists():
            raise Conflict(f"site {row.code} has nodes; decommission it instead of deleting it")

    model_delete(
        site, check=without_machines, payload=lambda row: field_values(row, SITE_FIELDS), actor=actor, source=source
    )


def site_probe(*, site: Site) -> Cluster:
    """Probe the site's cluster now and record what it says (sites.probing: reachability, nodes, health)."""
    return probing.site_probe(site=site)


def site_probe_request(*, sites: list[Site], actor: Actor, source: Source) -> int:
    """Queue a probe of each site's cluster (audited); the io workers carry them out. Returns the count."""
    with transaction.atomic():
        for site in sites:
            audit_record(actor=actor, verb="probe", obj=site, source=source)
            tasks.site_probe_task.delay_on_commit(site.pk)  # type: ignore[attr-defined]  # Celery 5.4+, not in stubs
    return len(sites)
