"""Applications and releases: what can be rolled out. A release is rendered for the sample site and a
few real sites when created or changed, and is immutable once a rollout used it."""

from typing import Any

from django.conf import settings
from django.db import transaction

from fleet.audit.choices import Source
from fleet.audit.services import Actor, audit_record, changes_between, field_values
from fleet.errors import Conflict, Invalid
from fleet.updates import model_delete, model_update
from fleet.validation import full_clean_or_invalid
from rollouts import approvals, k3s_policy, selectors
from rollouts.models import Application, Release
from rollouts.rendering import validate_release
from rollouts.services.actors import user_of
from sites.base_stack import APPLICATION as BASE_STACK_APPLICATION
from sites.models import Site

APPLICATION_FIELDS = (
    "name",
    "team",
    "namespace",
    "stateful",
    "restore_image",
    "extra_namespaces",
    "allowed_cluster_kinds",
    "description",
)
RELEASE_FIELDS = ("version", "templates", "values")
# Namespaces that hold the platform at every site (the cluster's own, the GitOps agent, the upgrade
# controller whose Plans run privileged Jobs on every machine, the base stack): only the platform's own
# applications, made by edgefleet itself (a system actor), may write there or take their names.
PLATFORM_NAMESPACES = frozenset(
    {"kube-system", "kube-public", "kube-node-lease", "flux-system", "system-upgrade", "edgefleet-system"}
)
PLATFORM_APPLICATIONS = frozenset({BASE_STACK_APPLICATION, k3s_policy.APPLICATION})


# --- applications -----------------------------------------------------------------------------------


def application_create(*, actor: Actor, source: Source, **fields: Any) -> Application:
    """Create an application. Raises Invalid for bad fields or a duplicate name."""
    unknown = set(fields) - set(APPLICATION_FIELDS)
    if unknown:
        raise Invalid(f"unknown application fields: {', '.join(sorted(unknown))}")
    application = Application(**fields)
    full_clean_or_invalid(application)
    _check_namespaces(application)
    _check_platform(application, actor, changed=set(APPLICATION_FIELDS))
    with transaction.atomic():
        if Application.objects.filter(name=application.name).exists():
            raise Invalid(f"an application named {application.name} already exists", field="name")
        application.save()
        audit_record(
            actor=actor,
            verb="create",
            obj=application,
            source=source,
            payload=field_values(application, APPLICATION_FIELDS),
        )
    return application


def _check_namespaces(application: Application) -> None:
    if application.namespace in application.extra_namespaces:
        raise Invalid("extra_namespaces repeats the application's own namespace", field="extra_namespaces")


def _check_platform(application: Application, actor: Actor, *, changed: set[str]) -> None:
    """People and integrations may not claim a platform namespace or a platform application's name."""
    if isinstance(actor, str) and actor.startswith("system:"):
        return
    if "name" in changed and application.name in PLATFORM_APPLICATIONS:
        raise Invalid(f"{application.name} is the name of a platform application, made by edgefleet", field="name")
    for field in ("namespace", "extra_namespaces"):
        if field not in changed:
            continue
        claimed = {application.namespace} if field == "namespace" else set(application.extra_namespaces)
        reserved = sorted(claimed & PLATFORM_NAMESPACES)
        if reserved:
            raise Invalid(
                f"{', '.join(reserved)} holds the platform at every site; only the platform's own applications "
                "(the base stack, k3s) write there",
                field=field,
            )


def application_update(*, application: Application, actor: Actor, source: Source, **changes: Any) -> Application:
    """Change an application. Its name and namespaces are fixed once a rollout used one of its releases:
    sites hold its objects there, under apps/<name>/."""

    def validate(row: Application, changed: set[str]) -> None:
        full_clean_or_invalid(row)
        _check_namespaces(row)
        _check_platform(row, actor, changed=changed)

    def fixed_once_released(row: Application, diff: dict[str, list[Any]]) -> list[str]:
        fixed = {"name", "namespace", "extra_namespaces", "allowed_cluster_kinds"} & set(diff)
        if fixed and row.releases.filter(locked_at__isnull=False).exists():
            name = diff["name"][0] if "name" in diff else row.name
            raise Conflict(
                f"application {name} has released to sites; {', '.join(sorted(fixed))} cannot change",
                field=sorted(fixed)[0],
            )
        if Application.objects.exclude(pk=row.pk).filter(name=row.name).exists():
            raise Invalid(f"an application named {row.name} already exists", field="name")
        return []

    return model_update(
        application,
        changes=changes,
        fields=APPLICATION_FIELDS,
        kind="application",
        actor=actor,
        source=source,
        validate=validate,
        on_change=fixed_once_released,
    )


def application_delete(*, application: Application, actor: Actor, source: Source) -> None:
    """Delete an application that has no release."""

    def unreleased(row: Application) -> None:
        if row.releases.exists():
            raise Conflict(f"application {row.name} has releases; it cannot be deleted")

    model_delete(application, check=unreleased, payload=lambda row: {"name": row.name}, actor=actor, source=source)


# --- releases ---------------------------------------------------------------------------------------


def release_create(
    *,
    actor: Actor,
    source: Source,
    application: Application,
    version: str,
    templates: Any,
    values: Any = None,
) -> Release:
    """Create a release after rendering every template for the sample site and a few real sites (one per
    region and label set, FLEET_RENDER_CHECK_SITES) in the renderer process, and checking the manifests.

    Raises Invalid naming the template path, the site, the document and the reason, or the site and the
    renderer limit passed; Invalid for a duplicate version. Every targeted site is rendered again when a
    rollout starts (and by a dry run), so a template that fails at one site only is refused there.
    """
    values = {} if values is None else values
    release = Release(application=application, version=version, templates=templates, values=values)
    if Release.objects.filter(application=application, version=version).exists():
        raise Invalid(f"{application.name} already has a release {version}", field="version")
    full_clean_or_invalid(release, exclude=["created_by"])
    k3s_policy.check_release(application, version, templates)
    validate_release(
        application=application, version=version, templates=templates, values=values, sites=_release_check_sites()
    )
    with transaction.atomic():
        if Release.objects.filter(application=application, version=version).exists():
            raise Invalid(f"{application.name} already has a release {version}", field="version")
        release.created_by = release.last_edited_by = user_of(actor)  # type: ignore[assignment]
        release.save()
        audit_record(
            actor=actor,
            verb="create",
            obj=release,
            source=source,
            payload={"application": application.name, "version": version, "templates": sorted(templates)},
        )
    return release


def release_update(*, release: Release, actor: Actor, source: Source, **changes: Any) -> Release:
    """Change a release that no rollout has used yet; a locked release is immutable (Conflict).

    The changed release is rendered as at creation before the transaction (rendering takes up to
    FLEET_RENDER_RELEASE_SECONDS, too long to hold a row lock, or SQLite's write lock); the transaction
    then refuses (Conflict) if the release changed meanwhile, so what is saved is what was rendered.
    """
    unknown = set(changes) - set(RELEASE_FIELDS)
    if unknown:
        raise Invalid(f"these release fields cannot be changed here: {', '.join(sorted(unknown))}")
    release = Release.objects.select_related("application").get(pk=release.pk)
    _check_unlocked(release)
    before = field_values(release, RELEASE_FIELDS)
    for key, value in changes.items():
        setattr(release, key, value)
    _validate_release(release, set())
    if changes_between(before, field_values(release, RELEASE_FIELDS)):
        k3s_policy.check_release(release.application, release.version, release.templates)
        validate_release(
            application=release.application,
            version=release.version,
            templates=release.templates,
            values=release.values,
            sites=_release_check_sites(),
        )

    def rendered_as_stored(locked: Release) -> None:
        _check_unlocked(locked)
        if field_values(locked, RELEASE_FIELDS) != before:
            raise Conflict(f"release {locked} changed while this change was being checked; try again")

    def version_free(row: Release, diff: dict[str, list[Any]]) -> list[str]:
        clash = Release.objects.exclude(pk=row.pk).filter(application=row.application, version=row.version)
        if clash.exists():
            raise Invalid(f"{row.application.name} already has a release {row.version}", field="version")
        row.last_edited_by = user_of(actor)  # type: ignore[assignment]
        return ["last_edited_by"]

    def clear_low_risk(row: Release, diff: dict[str, list[Any]]) -> None:
        approvals.low_risk_clear_for_release(release=row, actor=actor, source=source)

    return model_update(
        release,
        changes=changes,
        fields=RELEASE_FIELDS,
        kind="release",
        actor=actor,
        source=source,
        check=rendered_as_stored,
        validate=_validate_release,
        on_change=version_free,
        after=clear_low_risk,
        payload=lambda diff: {"changed": sorted(diff)},  # templates can be large: the names, not the values
    )


def _validate_release(release: Release, changed: set[str]) -> None:
    full_clean_or_invalid(release, exclude=["created_by"])


def _release_check_sites() -> list[Site]:
    return selectors.release_check_sites(settings.FLEET_RENDER_CHECK_SITES)


def release_delete(*, release: Release, actor: Actor, source: Source) -> None:
    """Delete a release that no rollout used and no plan names."""

    def unused(row: Release) -> None:
        _check_unlocked(row)
        if row.plans.exists():
            raise Conflict(f"release {row} is named by a rollout plan; change or delete the plan first")

    model_delete(release, check=unused, payload=lambda row: {"version": row.version}, actor=actor, source=source)


def _check_unlocked(release: Release) -> None:
    if release.locked_at is not None:
        raise Conflict(
            f"release {release} is locked (used by a rollout since {release.locked_at.isoformat()}); "
            "create a new version instead",
            field="templates",
        )
