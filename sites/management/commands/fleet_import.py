"""`manage.py fleet_import FILE`: create or update sites, clusters and nodes from a fleet.json."""

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fleet.errors import FleetError
from sites.imports import fleet_import_file


class Command(BaseCommand):
    help = "Import a fleet description (the simulator's fleet.json); safe to run again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--wait", type=float, default=0, help="seconds to wait for the file to appear")

    def handle(self, *args: Any, file: Path, wait: float, **options: Any) -> None:
        deadline = time.monotonic() + wait
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        try:
            summary = fleet_import_file(path=file, actor="system:fleet_import")
        except FleetError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(self.style.SUCCESS(str(summary)))
