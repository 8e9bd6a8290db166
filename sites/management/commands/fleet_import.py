"""`manage.py fleet_import FILE [--onboard] [--probe]`: create or update sites, clusters and nodes from a fleet.json,
and with --onboard start the onboarding of each site it lists (sites.site_lifecycle)."""

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fleet.audit.choices import Source, SystemActor
from fleet.errors import FleetError
from sites import services
from sites.choices import SiteState
from sites.imports import fleet_import_file
from sites.models import Site
from sites.site_lifecycle import sites_onboard_imported

ACTOR = SystemActor.FLEET_IMPORT


class Command(BaseCommand):
    help = "Import a fleet description (the simulator's fleet.json); safe to run again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--wait", type=float, default=0, help="seconds to wait for the file to appear")
        parser.add_argument(
            "--onboard",
            action="store_true",
            help="onboard every site listed (git host project, base stack, edge pointed at it): new sites start "
            "planned and become active once they applied it; sites onboarded already are left alone",
        )
        parser.add_argument(
            "--probe",
            action="store_true",
            help="queue a probe of every site listed at once (the workers record nodes' last seen and health), "
            "rather than at the next periodic probe",
        )

    def handle(self, *args: Any, file: Path, wait: float, onboard: bool, probe: bool, **options: Any) -> None:
        deadline = time.monotonic() + wait
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        state = SiteState.PLANNED if onboard else SiteState.ACTIVE
        try:
            summary = fleet_import_file(path=file, actor=ACTOR, new_site_state=state)
        except FleetError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(self.style.SUCCESS(str(summary)))
        if probe:
            count = services.site_probe_request(
                sites=list(Site.objects.filter(code__in=summary.codes)), actor=ACTOR, source=Source.COMMAND
            )
            self.stdout.write(f"queued a probe of {count} site(s)")
        if not onboard:
            return
        sites = list(Site.objects.filter(code__in=summary.codes).order_by("code"))
        try:
            outcome = sites_onboard_imported(sites=sites, actor=ACTOR, source=Source.COMMAND)
        except FleetError as exc:
            raise CommandError(exc.message) from exc
        for code, what in outcome.items():
            self.stdout.write(f"onboarding {code}: {what}")
