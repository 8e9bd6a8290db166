"""`manage.py demo_rollout`: start the demo rollout of `pos-bridge` to every site (see rollouts.demo)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fleet.errors import FleetError
from rollouts.demo import demo_rollout_start


class Command(BaseCommand):
    help = "Create the sample application pos-bridge and roll it out to every site in three waves; safe to rerun."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bake", type=int, default=15, help="seconds between waves (default 15)")
        parser.add_argument("--max-parallel", type=int, default=10, help="sites changed at once (default 10)")
        parser.add_argument(
            "--respect-windows", action="store_true", help="change sites only in their maintenance windows"
        )

    def handle(self, *args: Any, bake: int, max_parallel: int, respect_windows: bool, **options: Any) -> None:
        try:
            result = demo_rollout_start(bake_seconds=bake, max_parallel=max_parallel, respect_windows=respect_windows)
        except FleetError as exc:
            raise CommandError(exc.message) from exc
        rollout = result.rollout
        verb = "started" if result.started else "already going:"
        sizes = ", ".join(f"{w.name} {w.size}" for w in rollout.waves.order_by("index"))
        self.stdout.write(
            self.style.SUCCESS(
                f"demo rollout {verb} rollout {rollout.pk} of {rollout.release} ({rollout.state}; waves: {sizes}); "
                f"watch it at /admin/rollouts/rollout/{rollout.pk}/change/"
            )
        )
        if rollout.plan_snapshot.get("approve_first_wave"):
            self.stdout.write(
                "FLEET_ROLLOUT_APPROVAL_POLICY is on: it waits for an approval before each wave, by a person "
                "other than who started it (the demo is never marked low-risk)"
            )
