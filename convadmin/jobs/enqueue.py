from __future__ import annotations

from collections.abc import Callable
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


def enqueue_in_transaction(task: Task, *args: Any) -> Callable[[], None]:
    """Enqueue ``task`` as part of the caller's (durable) transaction; call what it returns right after the
    transaction block, once it is committed.

    On the database backend the job row is written now, inside the transaction: record and job are
    committed together or not at all, and the returned function does nothing. Other backends (Celery, the
    in-process one) cannot join our transaction: the returned function sends the job. A process that dies in
    between leaves a record without its job, which the settle job finds and runs.
    """
    if isinstance(task.get_backend(), DatabaseBackend):
        task.enqueue(*args)
        return lambda: None
    return partial(task.enqueue, *args)
