"""The Celery app, used only when TASKS_BACKEND=celery (settings name it in TASKS' OPTIONS).

Start a worker with ``celery -A convadmin.celery worker``. Jobs are plain ``django.tasks`` tasks: the
django-tasks-celery backend registers each one with this app when its module is imported, and
``autodiscover_tasks`` imports every installed app's ``tasks`` module in the worker.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "convadmin.settings")

app = Celery("convadmin")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    # get_result() needs the task's name with its result; RUNNING is only reported when started is tracked.
    result_extended=True,
    task_track_started=True,
    # Provider calls are slow and idempotent: one message at a time per process, acknowledged after the run, so
    # a worker lost mid-job leaves the message to be delivered again (after the broker's visibility timeout).
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    result_expires=7 * 24 * 3600,
)
app.autodiscover_tasks()
