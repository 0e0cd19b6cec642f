"""The export job (writes the file, then moves it into storage) and the periodic sweep (expired files,
exports whose worker was lost)."""

from __future__ import annotations

import logging
import os
import tempfile
from datetime import timedelta
from functools import partial
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.db.models import Q
from django.tasks import task
from django.utils import timezone

from convadmin.exports.models import Export, Status
from convadmin.exports.services import export_storage
from convadmin.lists import pg_export
from convadmin.lists.export import encoded, estimate_rows, registered, write_chunks

logger = logging.getLogger(__name__)

STALLED = (
    "The export stopped: its worker was stopped or lost (no progress for {minutes} minutes). "
    "Start it again from the list."
)


class _Stopped(Exception):
    """The record left RUNNING while the job wrote (the sweep marked it failed): stop writing."""


class _FinishedFile(File):
    """A complete local file: a local storage moves it into place (a rename) instead of copying it."""

    def temporary_file_path(self) -> str:
        return self.name


def _progress(pk: int, count: int) -> None:
    if not Export.objects.filter(pk=pk, status=Status.RUNNING).update(
        rows_written=count, progress_at=timezone.now()
    ):
        raise _Stopped


def _private_folder(path: Path) -> None:
    """Create ``path`` and its missing parents owner-only (``mkdir -p`` would leave the parents 0755)."""
    for folder in [*reversed(path.parents), path]:
        if not folder.exists():
            folder.mkdir(mode=0o700, exist_ok=True)


def _stall_cutoff():
    return timezone.now() - timedelta(minutes=settings.EXPORT_STALL_MINUTES)


@task
def run_export(export_id: int) -> str:
    """Write export ``export_id``'s file to a temporary name, then move it into storage and mark the record
    done: a cut file is never offered. A failure marks the record failed with the reason."""
    now = timezone.now()
    # Queued, or (a broker delivering a lost job again) running without progress for too long.
    claimable = Q(status=Status.QUEUED) | Q(status=Status.RUNNING, progress_at__lt=_stall_cutoff())
    if not Export.objects.filter(claimable, pk=export_id).update(
        status=Status.RUNNING, started_at=now, progress_at=now, rows_written=0
    ):
        return "not queued"
    try:
        _write(Export.objects.get(pk=export_id))
    except _Stopped:
        return "stopped"
    except Exception as exc:
        logger.exception("export %s failed", export_id)
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no message'}"[:300]
        Export.objects.filter(pk=export_id, status=Status.RUNNING).update(
            status=Status.FAILED,
            finished_at=timezone.now(),
            error=f"The export stopped with an error ({reason}). Start it again from the list; "
            "if it fails again, tell an administrator.",
        )
        return "failed"
    return "done"


def _write(export: Export) -> None:
    spec = registered(export.list_name)
    if spec is None:
        raise LookupError(f"no list named {export.list_name!r} can be exported")
    form = spec.form(export.filters)
    if not form.is_valid():  # e.g. a credential named in the filters was deleted: never export more
        problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
        raise ValueError(f"the filters are no longer valid: {problems}")
    qs = spec.queryset(form.filters())
    Export.objects.filter(pk=export.pk).update(rows_estimate=estimate_rows(qs))
    if pg_export.usable(spec, qs):  # the same bytes, written by PostgreSQL
        chunks = pg_export.chunks(spec, qs, export.format)
    else:
        chunks = encoded(spec.rows(qs, export.format), export.format, spec.header)

    folder = Path(settings.EXPORT_TMP_DIR)
    _private_folder(folder)
    fd, partial_path = tempfile.mkstemp(prefix=f"export-{export.pk}-", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            count = write_chunks(chunks, out, compress=export.gzip, progress=partial(_progress, export.pk))
        size = os.path.getsize(partial_path)
        storage = export_storage()
        with open(partial_path, "rb") as done_file:
            name = storage.save(export.download_name, _FinishedFile(done_file, name=partial_path))
        now = timezone.now()
        finished = Export.objects.filter(pk=export.pk, status=Status.RUNNING).update(
            status=Status.DONE,
            file_name=name,
            size=size,
            rows_written=count,
            progress_at=now,
            finished_at=now,
            expires_at=now + timedelta(hours=settings.EXPORT_KEEP_HOURS),
        )
        if not finished:  # marked failed meanwhile: offer nothing
            storage.delete(name)
    finally:
        if os.path.exists(partial_path):
            os.unlink(partial_path)


@task
def sweep_exports() -> dict[str, int]:
    """Delete the files of expired exports (marking them expired) and mark failed every running export
    without progress for EXPORT_STALL_MINUTES (its worker was killed: the database backend would leave
    it running forever)."""
    now = timezone.now()
    stalled = Export.objects.filter(status=Status.RUNNING, progress_at__lt=_stall_cutoff()).update(
        status=Status.FAILED,
        finished_at=now,
        error=STALLED.format(minutes=settings.EXPORT_STALL_MINUTES),
    )
    storage = export_storage()
    expired = 0
    for pk, name in Export.objects.filter(status=Status.DONE, expires_at__lte=now).values_list(
        "pk", "file_name"
    ):
        if name:
            storage.delete(name)
        expired += Export.objects.filter(pk=pk, status=Status.DONE).update(
            status=Status.EXPIRED, file_name=""
        )
    return {"stalled": stalled, "expired": expired}
