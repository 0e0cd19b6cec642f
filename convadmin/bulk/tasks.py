"""The bulk jobs (``django.tasks``): thin wrappers over :mod:`convadmin.bulk.services`."""

from __future__ import annotations

from django.tasks import TaskContext, task

from convadmin.bulk import services


@task(takes_context=True)
def run_batch(context: TaskContext, pk: int, generation: int | None = None) -> str:
    """One of a batch's senders (a start or resume enqueues as many as the credential's concurrency): claims
    rows one by one until none is left; safe to run again (a killed worker's rows are never sent twice)."""
    sender = f"job {context.task_result.id}"
    return services.run_batch(pk, generation, sender=sender).status


@task
def resume_stalled_batches() -> list[int]:
    """Every minute (JOBS_SCHEDULE): resume the running batches whose senders were all lost."""
    return services.resume_stalled_batches()
