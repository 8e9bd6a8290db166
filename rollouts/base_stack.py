"""The base stack as a release like any other: the platform's `base-stack` application, its releases made
from the versioned template sets in `templates/base-stack/<version>/`, and the provider that renders one
site's base stack for onboarding (sites.base_stack asks it; RolloutsConfig.ready registers it).

A release of the base stack is an ordinary Release: its templates are the files of one template version,
its values the platform's settings at the time (`sites.base_stack.platform_values`: where the edge reads
its repository, the deploy token's Secret, the log sink). Rendering goes through the same renderer process
and sandbox as every release, the files land in `apps/base-stack/` as any application's do, and a change
for the fleet (a new Vector configuration, another log sink) is a new release rolled out with waves, gates
and drift checks. Onboarding renders the release of the current version (FLEET_BASE_STACK_VERSION, by
default the newest folder) for the new site, so a new site gets what the fleet is moving to.

Releases are made at first use, idempotently: the release of a version whose templates and values are
those of today is reused; if that version's release was made with other values (the log sink changed),
the new one is `<version>+<digest>` (semver build metadata), so a release never changes under a rollout.
`manage.py base_stack_release [--template-version V]` makes one ahead of a rollout.
"""

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Q

from fleet.audit.choices import Source, SystemActor
from fleet.audit.services import Actor
from fleet.errors import Conflict, Invalid
from rollouts import services
from rollouts.models import Application, Release
from rollouts.platform_apps import platform_application, template_files
from rollouts.rendering import render_site_files
from sites.base_stack import APPLICATION, BaseStack, BaseStackUnavailable, platform_values
from sites.models import Site

ACTOR = SystemActor.BASE_STACK
_VERSION_RE = re.compile(r"^[0-9]+(\.[0-9]+){0,2}([-.][A-Za-z0-9.-]+)?$")
APPLICATION_FIELDS: dict[str, Any] = {
    "team": "platform",
    "namespace": "edgefleet-system",
    "extra_namespaces": ["flux-system", "kube-system", "system-upgrade"],
    "allowed_cluster_kinds": ["ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"],
    "description": (
        "The platform's base stack at every site: the Flux source and sync of the site's repository, the Vector "
        "log agent, the node exporter, the kube-system namespace policy, the system-upgrade-controller (K3s "
        "upgrades). Owned by the platform; made from templates/base-stack/<version>/ (rollouts.base_stack)."
    ),
}


def templates_root() -> Path:
    return Path(settings.BASE_DIR) / "templates" / "base-stack"


def _version_key(version: str) -> tuple[tuple[int, ...], str]:
    numbers = re.match(r"^[0-9.]+", version)
    parts = tuple(int(p) for p in numbers.group(0).strip(".").split(".") if p) if numbers else ()
    return parts, version


def template_versions() -> list[str]:
    """The template versions kept in the project, oldest first."""
    root = templates_root()
    found = [p.name for p in root.iterdir() if p.is_dir() and _VERSION_RE.match(p.name)] if root.is_dir() else []
    return sorted(found, key=_version_key)


def current_version() -> str:
    """FLEET_BASE_STACK_VERSION, or the newest template version; BaseStackUnavailable when there is none."""
    versions = template_versions()
    wanted = settings.FLEET_BASE_STACK_VERSION or (versions[-1] if versions else "")
    if not wanted or wanted not in versions:
        known = ", ".join(versions) or "none"
        raise BaseStackUnavailable(
            f"no base stack template version {wanted or '(newest)'} in {templates_root()} (known: {known}); "
            "fix FLEET_BASE_STACK_VERSION"
        )
    return wanted


def read_templates(version: str) -> dict[str, str]:
    """`{path: template}` of one template version: every .yaml/.yml file below its folder."""
    if version not in template_versions():
        raise BaseStackUnavailable(f"no base stack template version {version!r} in {templates_root()}")
    return template_files(templates_root() / version)


def base_stack_application(*, actor: Actor = ACTOR, source: Source = Source.WORKFLOW) -> Application:
    """The platform's `base-stack` application, made the first time it is needed."""
    application = platform_application(APPLICATION, APPLICATION_FIELDS, actor=actor, source=source)
    return _with_current_fields(application, actor=actor, source=source)


def _with_current_fields(application: Application, *, actor: Actor, source: Source) -> Application:
    """An application made before the base stack grew (e.g. the system-upgrade namespace) gets the
    namespaces and cluster kinds its templates now need."""
    changes = {}
    for field in ("extra_namespaces", "allowed_cluster_kinds"):
        have = list(getattr(application, field))
        missing = [value for value in APPLICATION_FIELDS[field] if value not in have]
        if missing:
            changes[field] = have + missing
    if not changes:
        return application
    try:
        return services.application_update(application=application, actor=actor, source=source, **changes)
    except Conflict:
        return application  # released already: its namespaces are fixed, the render says what is refused


def base_stack_release(
    version: str | None = None, *, actor: Actor = ACTOR, source: Source = Source.WORKFLOW
) -> Release:
    """The release of the base stack at `version` (default: the current one) with today's values: reused
    when it exists, made (rendered and checked like any release) when it does not."""
    version = version or current_version()
    templates = read_templates(version)
    values = platform_values()
    application = base_stack_application(source=source)  # the platform's, made by edgefleet whoever asks
    same = _matching(application, version, templates, values)
    if same is not None:
        return same
    digest = hashlib.sha256(json.dumps([templates, values], sort_keys=True).encode()).hexdigest()[:10]
    name = f"{version}+{digest}" if application.releases.filter(version=version).exists() else version
    try:
        return services.release_create(
            actor=actor, source=source, application=application, version=name, templates=templates, values=values
        )
    except Invalid:
        same = _matching(application, version, templates, values)  # made meanwhile by another worker
        if same is None:
            raise
        return same


def _matching(application: Application, version: str, templates: dict[str, str], values: Any) -> Release | None:
    candidates = application.releases.filter(Q(version=version) | Q(version__startswith=f"{version}+"))
    for release in candidates.order_by("id"):
        if release.templates == templates and release.values == values:
            return release
    return None


def render_base_stack(site: Site) -> BaseStack:
    """The provider sites.base_stack asks: the current base-stack release rendered for `site` (in the
    renderer process, checked), as `{apps/base-stack/<path>: text}`."""
    release = base_stack_release()
    return BaseStack(version=release.version, files=render_site_files(release, site), release_id=release.pk)
