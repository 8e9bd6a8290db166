"""K3s itself as a platform application: `k3s`, whose releases are K3s versions (`v1.31.4+k3s1`) made from
`templates/k3s/<version>/` (the system-upgrade-controller Plans that upgrade a site's nodes, servers first).

A K3s upgrade is then a rollout like any other: waves, canaries, thresholds, bake, approval, windows. What
differs is checked here and in rollouts.k3s_policy (no minor version skipped, never a downgrade, never
rolled back) and rollouts.workflows.upgrade_checks (a site converges when its nodes do, not its repository).

`manage.py k3s_release <version>` makes the release of a version whose templates are in the project.
"""

from pathlib import Path

from django.conf import settings

from fleet.audit.choices import Source, SystemActor
from fleet.audit.services import Actor
from fleet.errors import Invalid
from rollouts import services
from rollouts.k3s_policy import APPLICATION
from rollouts.models import Application, Release
from rollouts.platform_apps import platform_application, template_files
from sites.k3s_versions import K3sVersion

ACTOR = SystemActor.K3S
APPLICATION_FIELDS = {
    "team": "platform",
    "namespace": "system-upgrade",
    "description": (
        "K3s on every site's machines, upgraded in place by the system-upgrade-controller of the base stack: "
        "each release is a K3s version whose Plans upgrade the servers, then the agents, one node at a time, "
        "cordoned and drained within the disruption budgets. Made from templates/k3s/<version>/ (rollouts.k3s)."
    ),
}


def templates_root() -> Path:
    return Path(settings.BASE_DIR) / "templates" / "k3s"


def template_versions() -> list[str]:
    """The K3s versions whose templates the project holds, oldest first."""
    root = templates_root()
    found = [p.name for p in root.iterdir() if p.is_dir() and K3sVersion.parse(p.name)] if root.is_dir() else []
    return sorted(found, key=lambda v: K3sVersion.parse(v) or K3sVersion(0, 0, 0))


def read_templates(version: str) -> dict[str, str]:
    if version not in template_versions():
        known = ", ".join(template_versions()) or "none"
        raise Invalid(f"no K3s templates for {version!r} in {templates_root()} (known: {known})", field="version")
    return template_files(templates_root() / version)


def k3s_application(*, actor: Actor = ACTOR, source: Source = Source.COMMAND) -> Application:
    """The platform's `k3s` application, made the first time it is needed."""
    return platform_application(APPLICATION, APPLICATION_FIELDS, actor=actor, source=source)


def k3s_release(version: str, *, actor: Actor = ACTOR, source: Source = Source.COMMAND) -> Release:
    """The release of K3s `version` (reused when it exists), rendered and checked like any release."""
    if K3sVersion.parse(version) is None:
        raise Invalid(f"{version!r} is not a K3s version (like v1.31.4+k3s1)", field="version")
    application = k3s_application(source=source)  # the platform's, made by edgefleet whoever asks
    found = application.releases.filter(version=version).first()
    if found is not None:
        return found
    return services.release_create(
        actor=actor, source=source, application=application, version=version, templates=read_templates(version)
    )
