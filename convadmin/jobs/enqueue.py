from __future__ import annotations

from functools import partial
from typing import Any

from django.db import transaction
from django.tasks import Task, TaskResult
from django_tasks_db import DatabaseBackend


def enqueue_on_commit(task: Task, *args: Any, **kwargs: Any) -> TaskResult | None:
    """Enqueue ``task`` so that no worker sees it before the caller's transaction is committed.

    On the database backend the task row is written in the caller's transaction, so the job and the record it
    works on are committed (or rolled back) together, and the result is returned. Other backends (Celery, the
    in-process one) send it from ``transaction.on_commit`` (at once outside a transaction) and return None;
    a rollback sends nothing.
    """
    if isinstance(task.get_backend(), DatabaseBackend):
        return task.enqueue(*args, **kwargs)
    transaction.on_commit(partial(task.enqueue, *args, **kwargs), robust=False)
    return None
