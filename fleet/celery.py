"""The Celery application.

Messages are only wake-up calls: the database row is the truth. Hence late acknowledgement, re-delivery
when a worker dies, and a prefetch of one, so a crash loses at most the message being worked on and
that message is delivered again.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleet.settings")

app = Celery("fleet")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
