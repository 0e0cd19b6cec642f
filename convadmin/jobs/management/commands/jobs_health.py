from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Min
from django.tasks import task_backends
from django.utils import timezone
from django_tasks_db import DatabaseBackend
from django_tasks_db.models import DBTaskResult

from convadmin.jobs.models import Heartbeat


def _ago(when) -> str:
    return f"{(timezone.now() - when).total_seconds():.0f} s ago"


class Command(BaseCommand):
    help = "Say whether a worker ran the clock's heartbeat job recently; exit 1 if not."

    def add_arguments(self, parser):
        parser.add_argument("--max-age", type=int, default=180, help="Seconds a heartbeat stays fresh.")

    def handle(self, *, max_age: int, **options):
        if isinstance(task_backends["default"], DatabaseBackend):
            waiting = DBTaskResult.objects.ready().aggregate(n=Min("enqueued_at"))["n"]
            running = DBTaskResult.objects.running()
            self.stdout.write(
                f"queue: {DBTaskResult.objects.ready().count()} waiting"
                + (f" (oldest enqueued {_ago(waiting)})" if waiting else "")
                + f", {running.count()} running"
            )
        beat = Heartbeat.objects.filter(name="worker").first()
        if beat is None:
            raise CommandError("no heartbeat yet: is the clock (jobs_clock) running, and a worker?")
        if beat.at < timezone.now() - timedelta(seconds=max_age):
            raise CommandError(
                f"stale: the last heartbeat ran {_ago(beat.at)}; the worker or the clock is down"
            )
        self.stdout.write(f"ok: a worker ran the heartbeat {_ago(beat.at)}")
