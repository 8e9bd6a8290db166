"""`python -m fleet.flower`: Flower, always behind basic auth with the credentials from the environment."""

import os
import sys

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleet.settings")
    django.setup()
    from django.conf import settings

    if not settings.FLOWER_USER or not settings.FLOWER_PASSWORD:
        sys.exit("Flower needs FLEET_FLOWER_USER and FLEET_FLOWER_PASSWORD; it never runs without authentication")
    from fleet.celery import app

    app.start(
        [
            "flower",
            f"--port={settings.FLOWER_PORT}",
            f"--basic-auth={settings.FLOWER_USER}:{settings.FLOWER_PASSWORD}",
            "--persistent=False",
        ]
    )


if __name__ == "__main__":
    main()
