"""The clock: enqueues each task of JOBS_SCHEDULE every N seconds, on whichever backend TASKS names.

Each run is claimed by a conditional UPDATE of its ScheduledJob row in the same transaction as the enqueue, so
two clocks (a redeploy's overlap, a second machine) never enqueue the same run twice, a clock restart neither
repeats nor skips a run, and a failed enqueue (broker down) is retried on the next tick.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.tasks import Task
from django.utils import timezone
from django.utils.module_loading import import_string

from convadmin.jobs.models import ScheduledJob


def load_schedule() -> dict[str, tuple[Task, timedelta]]:
    """JOBS_SCHEDULE as {task path: (task, interval)}; a path that is not a task fails loudly."""
    schedule = {}
    for path, seconds in settings.JOBS_SCHEDULE.items():
        task = import_string(path)
        if not isinstance(task, Task) or seconds <= 0:
            raise ImproperlyConfigured(f"JOBS_SCHEDULE: {path!r} must name a @task with a positive interval.")
        schedule[path] = (task, timedelta(seconds=seconds))
    return schedule


def tick(schedule: dict[str, tuple[Task, timedelta]], now: datetime | None = None) -> list[str]:
    """Enqueue every task that is due (a new entry is due at once); return the paths enqueued."""
    now = now or timezone.now()
    enqueued = []
    for path, (task, every) in schedule.items():
        with transaction.atomic():
            ScheduledJob.objects.get_or_create(task_path=path, defaults={"last_enqueued_at": now - every})
            due = ScheduledJob.objects.filter(task_path=path, last_enqueued_at__lte=now - every)
            if due.update(last_enqueued_at=now):
                task.enqueue()
                enqueued.append(path)
    return enqueued
