"""The jobs every deployment runs on a schedule (see JOBS_SCHEDULE and ``manage.py jobs_clock``)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.tasks import task
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from convadmin.jobs.models import Heartbeat


@task
def heartbeat() -> str:
    """Record that a worker is running jobs (``manage.py jobs_health`` reads it)."""
    now = timezone.now()
    Heartbeat.objects.update_or_create(name="worker", defaults={"at": now})
    return now.isoformat()


@task
def prune_task_results(days: int | None = None) -> int:
    """Delete finished task results older than ``days`` (JOBS_RESULT_RETENTION_DAYS); return how many.

    Only the database backend keeps results in our tables; Celery's expire in Redis by themselves.
    """
    days = settings.JOBS_RESULT_RETENTION_DAYS if days is None else days
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = DBTaskResult.objects.finished().filter(finished_at__lt=cutoff).delete()
    return deleted
