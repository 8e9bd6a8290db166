"""`manage.py encrypt_secret`: read a secret on standard input, print `fernet:<token>` for a setting.

FLEET_GITLAB_TOKEN and FLEET_GIT_TOKEN accept that form (sites.crypto.setting_secret), so the value in
a .env file or a deployment's environment is useless without FLEET_SECRET_KEYS. After a key rotation,
encrypt again and replace the value before the old key is dropped.
"""

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from sites.crypto import SETTING_PREFIX, encrypt


class Command(BaseCommand):
    help = "Encrypt a secret read from standard input with FLEET_SECRET_KEYS, for FLEET_GITLAB_TOKEN and the like."

    def handle(self, *args: Any, **options: Any) -> None:
        secret = sys.stdin.readline().strip()
        if not secret:
            raise CommandError("nothing to encrypt: give the secret on standard input")
        self.stdout.write(SETTING_PREFIX + encrypt(secret))
