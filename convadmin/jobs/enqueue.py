from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from django.tasks import Task
from django_tasks_db import DatabaseBackend


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
