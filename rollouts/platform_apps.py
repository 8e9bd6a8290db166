"""What the platform's own applications share (the base stack, rollouts.base_stack, and K3s, rollouts.k3s):
the application made the first time it is needed, whoever asks; releases made from a folder of templates
kept in the project; and what the commands that make those releases say."""

from pathlib import Path
from typing import Any

from fleet.audit.choices import Source
from fleet.audit.services import Actor
from fleet.errors import Invalid
from rollouts import services
from rollouts.models import Application, Release


def platform_application(name: str, fields: dict[str, Any], *, actor: Actor, source: Source) -> Application:
    """The platform's application `name`, made with `fields` the first time it is needed."""
    found = Application.objects.filter(name=name).first()
    if found is not None:
        return found
    try:
        return services.application_create(actor=actor, source=source, name=name, **fields)
    except Invalid:
        found = Application.objects.filter(name=name).first()  # made meanwhile by another worker
        if found is None:
            raise
        return found


def template_files(folder: Path) -> dict[str, str]:
    """`{path: template}` of one template version's folder: every .yaml/.yml file below it."""
    return {
        path.relative_to(folder).as_posix(): path.read_text()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.suffix in (".yaml", ".yml")
    }


def release_made(release: Release, *, what: str, versions: str) -> str:
    """What a command that made (or found) a platform release says: which release it is, the versions the
    project holds templates for, and how to roll it out."""
    return (
        f"{what} release {release.pk}: {release.application.name} {release.version} ({versions}); "
        f'roll it out with a plan (POST /api/v1/rollout-plans/ with "release": {release.pk})'
    )
