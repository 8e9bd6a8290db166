"""`manage.py rotate_secrets`: re-encrypt stored credentials under the first FLEET_SECRET_KEYS key."""

from typing import Any

from django.core.management.base import BaseCommand

from sites.services import clusters_rotate_keys


class Command(BaseCommand):
    help = "Re-encrypt every cluster credential under the first key of FLEET_SECRET_KEYS."

    def handle(self, *args: Any, **options: Any) -> None:
        count = clusters_rotate_keys()
        self.stdout.write(self.style.SUCCESS(f"re-encrypted {count} cluster credential(s)"))
