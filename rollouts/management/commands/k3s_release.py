"""`manage.py k3s_release <version>`: the release of K3s `version` (the platform's `k3s` application, its
Plans from templates/k3s/<version>/), made if it does not exist yet, ready for a rollout plan (rollouts.k3s)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fleet.audit.choices import Source, SystemActor
from fleet.errors import FleetError
from rollouts.k3s import k3s_release, template_versions
from rollouts.platform_apps import release_made


class Command(BaseCommand):
    help = "Make (or find) the k3s application's release of a K3s version in templates/k3s/."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("version", help="a K3s version with templates in templates/k3s/, e.g. v1.31.4+k3s1")

    def handle(self, *args: Any, version: str, **options: Any) -> None:
        try:
            release = k3s_release(version, actor=SystemActor.K3S_RELEASE, source=Source.COMMAND)
        except FleetError as exc:
            raise CommandError(exc.message) from exc
        versions = f"versions with templates: {', '.join(template_versions())}"
        self.stdout.write(self.style.SUCCESS(release_made(release, what="K3s", versions=versions)))
