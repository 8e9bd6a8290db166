"""The Celery application.

Messages are only wake-up calls: the database row is the truth. Hence late acknowledgement, re-delivery
when a worker dies, and a prefetch of one, so a crash loses at most the message being worked on and
that message is delivered again.
"""

import os
from typing import Any

from celery import Celery
from celery.signals import task_prerun

from fleet import kombu_fixes

kombu_fixes.apply()  # a worker survives losing Redis (see the module)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleet.settings")

app = Celery("fleet")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _drop_unusable_connections(**kwargs: Any) -> None:
    """Connections are reused across tasks (CELERY_DB_REUSE_MAX); never start a task on a dead or
    expired one (CONN_MAX_AGE, CONN_HEALTH_CHECKS)."""
    from django.db import close_old_connections

    close_old_connections()
