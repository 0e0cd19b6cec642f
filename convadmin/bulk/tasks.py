"""The bulk job (``django.tasks``): a thin wrapper over :func:`convadmin.bulk.services.run_batch`."""

from __future__ import annotations

from django.tasks import task

from convadmin.bulk import services


@task
def run_batch(pk: int) -> str:
    """Send a batch's ready rows at its pace; safe to run again (a killed worker's rows are never sent twice)."""
    return services.run_batch(pk).status
