from __future__ import annotations

import os
import sys

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.tasks import task_backends
from django_tasks_db import DatabaseBackend


class Command(BaseCommand):
    help = "Run a job worker for the configured TASKS_BACKEND: db_worker, or a Celery worker."

    def add_arguments(self, parser):
        parser.add_argument("--concurrency", type=int, default=None, help="Celery worker processes.")

    def handle(self, *, concurrency: int | None, verbosity: int, **options):
        backend = task_backends["default"]
        if isinstance(backend, DatabaseBackend):
            call_command("db_worker", queue_name="*", verbosity=verbosity)
        elif type(backend).__name__ == "CeleryBackend":
            argv = [sys.executable, "-m", "celery", "-A", "convadmin.celery", "worker", "--loglevel=INFO"]
            if concurrency:
                argv.append(f"--concurrency={concurrency}")
            os.execv(sys.executable, argv)  # noqa: S606 (the worker replaces this process)
        else:
            raise CommandError(
                f"{type(backend).__name__} runs jobs in the enqueuing process; no worker is needed."
            )
