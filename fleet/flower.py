"""`python -m fleet.flower`: Flower, always behind basic auth with the credentials from the environment.

The credentials reach Flower through its own environment variable (FLOWER_BASIC_AUTH), never its command
line: a command line is readable by every user of the machine (`ps`, /proc/<pid>/cmdline), a process's
environment only by its owner.
"""

import os
import sys

import django


def basic_auth(user: str, password: str) -> str:
    """Flower's `user:password` list entry; refuses what Flower would split differently (`,` and `:`)."""
    if not user or not password:
        raise ValueError(
            "Flower needs FLEET_FLOWER_USER and FLEET_FLOWER_PASSWORD; it never runs without authentication"
        )
    if "," in user + password or ":" in user:
        raise ValueError("FLEET_FLOWER_USER and FLEET_FLOWER_PASSWORD may not contain ',' (nor the user ':')")
    return f"{user}:{password}"


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleet.settings")
    django.setup()
    from django.conf import settings

    try:
        os.environ["FLOWER_BASIC_AUTH"] = basic_auth(settings.FLOWER_USER, settings.FLOWER_PASSWORD)
    except ValueError as exc:
        sys.exit(str(exc))
    from fleet.celery import app

    app.start(flower_argv(port=settings.FLOWER_PORT, max_tasks=settings.FLOWER_MAX_TASKS))


def flower_argv(*, port: int, max_tasks: int) -> list[str]:
    """Flower's arguments: everything but the credentials, which FLOWER_BASIC_AUTH carries. `max_tasks`
    bounds the task events Flower keeps in memory (it grew ~1.5 MB a minute at 300 idle sites)."""
    return ["flower", f"--port={port}", "--persistent=False", f"--max-tasks={max_tasks}"]


if __name__ == "__main__":
    main()
