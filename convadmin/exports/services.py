"""Starting an export job: the record, the list's audit row and the job, committed together."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.core.files.storage import Storage, storages
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from convadmin.exports.models import Export
from convadmin.jobs.enqueue import enqueue_in_transaction
from convadmin.lists.export import ExportList, file_name
from convadmin.lists.filters import describe_filters


def export_storage() -> Storage:
    """The storage export files go to (EXPORT_STORAGE names an alias of STORAGES)."""
    return storages[settings.EXPORT_STORAGE]


def start_export(
    request: HttpRequest, spec: ExportList, form: forms.Form, fmt: str, compress: bool
) -> Export:
    """Record an export of ``spec`` with ``form``'s filters, audit it and enqueue its job, in one transaction."""
    from convadmin.exports.tasks import run_export

    submitted = {name: value for name, value in form.query().items() if name != "size"}
    with transaction.atomic(durable=True):
        export = Export.objects.create(
            created_by=request.user,
            list_name=spec.name,
            format=fmt,
            gzip=compress,
            filters=submitted,
            download_name=file_name(spec.name, fmt, timezone.now(), compress=compress),
        )
        details = {"format": fmt, "filters": describe_filters(form.filters())}
        spec.audit(request, details | {"via": "web, as a job", "export": export.pk, "gzip": compress})
        send = enqueue_in_transaction(run_export, export.pk)
    send()
    export.refresh_from_db()
    return export
