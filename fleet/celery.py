"""The Celery application.

Messages are only wake-up calls: the database row is the truth. Hence late acknowledgement, re-delivery
when a worker dies, and a prefetch of one, so a crash loses at most the message being worked on and
that message is delivered again.
"""

import os
from typing import Any

from celery import Celery, bootsteps
from celery.signals import task_prerun

from fleet import kombu_fixes, liveness

kombu_fixes.apply()  # a worker survives losing Redis (see the module)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleet.settings")

app = Celery("fleet")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class LivenessFile(bootsteps.StartStopStep):
    """Touches FLEET_WORKER_LIVENESS_FILE from the event loop's timer (fleet/liveness.py): the file goes
    stale when the worker's main loop stops turning, which a liveness probe turns into a restart."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        from django.conf import settings

        self.path = settings.FLEET_WORKER_LIVENESS_FILE
        self.every = settings.FLEET_WORKER_LIVENESS_SECONDS
        self.entry: Any = None
        super().__init__(worker, **kwargs)

    def include_if(self, worker: Any) -> bool:
        return bool(self.path)

    def start(self, worker: Any) -> None:
        liveness.touch(self.path)
        self.entry = worker.timer.call_repeatedly(self.every, liveness.touch, (self.path,))

    def stop(self, worker: Any) -> None:
        if self.entry is not None:
            self.entry.cancel()


app.steps["worker"].add(LivenessFile)


@task_prerun.connect
def _drop_unusable_connections(**kwargs: Any) -> None:
    """Connections are reused across tasks (CELERY_DB_REUSE_MAX); never start a task on a dead or
    expired one (CONN_MAX_AGE, CONN_HEALTH_CHECKS)."""
    from django.db import close_old_connections

    close_old_connections()
