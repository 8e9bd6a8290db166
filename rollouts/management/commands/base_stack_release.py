"""`manage.py base_stack_release [--template-version V]`: the release of the platform's base stack at a template
version (default: the current one), made if it does not exist yet, ready for a rollout plan (rollouts.base_stack)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fleet.audit.choices import Source, SystemActor
from fleet.errors import FleetError
from rollouts.base_stack import base_stack_release, template_versions
from rollouts.platform_apps import release_made
from sites.base_stack import BaseStackUnavailable


class Command(BaseCommand):
    help = "Make (or find) the base stack's release for a template version in templates/base-stack/."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--template-version",
            dest="template_version",
            default=None,
            help="a folder of templates/base-stack/ (default: current)",
        )

    def handle(self, *args: Any, template_version: str | None, **options: Any) -> None:
        try:
            release = base_stack_release(template_version, actor=SystemActor.BASE_STACK_RELEASE, source=Source.COMMAND)
        except (BaseStackUnavailable, FleetError) as exc:
            raise CommandError(exc.message) from exc
        versions = f"template versions: {', '.join(template_versions())}"
        self.stdout.write(self.style.SUCCESS(release_made(release, what="base stack", versions=versions)))
