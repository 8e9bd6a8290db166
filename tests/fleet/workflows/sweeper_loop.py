"""A stand-in for celery beat in the broker test: runs the workflow sweeper every FLEET_WORKFLOW_SWEEP_SECONDS.

Run as `python -m tests.fleet.workflows.sweeper_loop` with the environment of the worker it serves.
"""

import logging
import os
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleet.settings")
django.setup()

from django.conf import settings  # noqa: E402

from fleet.workflows.engine import sweep  # noqa: E402

log = logging.getLogger("sweeper_loop")

if __name__ == "__main__":
    while True:
        try:
            sweep()
        except Exception:  # a broker or database hiccup: beat would simply try at the next tick too
            log.warning("sweep failed", exc_info=True)
        time.sleep(settings.FLEET_WORKFLOW_SWEEP_SECONDS)
