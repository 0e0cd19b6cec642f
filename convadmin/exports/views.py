"""Start an export (streamed when small, else a job), follow its job, download its file.

Every view allows only the roles that may export the list in question (its registration says which).
"""

from __future__ import annotations

from django import forms
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.forms.utils import pretty_name
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseClientRedirect

from convadmin.accounts.roles import READERS, has_role, role_required
from convadmin.audit.models import EventType
from convadmin.audit.services import client_ip, record
from convadmin.exports.models import Export
from convadmin.exports.services import export_storage, start_export
from convadmin.lists.export import (
    CONTENT_TYPES,
    FORMATS,
    ExportList,
    fits_stream,
    registered,
    stream_max_rows,
    streaming_response,
)
from convadmin.lists.filters import describe_filters
from convadmin.lists.views import fragment_or_page


def _list_for(request: HttpRequest, name: str) -> ExportList:
    spec = registered(name)
    if spec is None:
        raise Http404("No such list.")
    if not has_role(request.user, spec.roles):
        raise PermissionDenied("Your role does not allow exporting this list.")
    return spec


@role_required(READERS)
@require_POST
def export_start(request: HttpRequest, name: str) -> HttpResponse:
    """The list's Export button: filters in the query string, ``format`` and ``gzip`` posted. Few rows (and
    no gzip) stream at once; more start a job and lead to its page."""
    spec = _list_for(request, name)
    fmt = request.POST.get("format", "csv")
    if fmt not in FORMATS:
        return HttpResponseBadRequest("Choose the CSV or JSONL format.", content_type="text/plain")
    compress = request.POST.get("gzip") == "1"
    form = spec.form(request.GET)
    if not form.is_valid():
        problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
        return HttpResponseBadRequest(f"Fix the filters first: {problems}", content_type="text/plain")
    if not compress and fits_stream(spec.queryset(form.filters()), stream_max_rows()):
        return streaming_response(request, spec, form, fmt, {"via": "web"})
    export = start_export(request, spec, form, fmt, compress)
    url = reverse("export_detail", args=[export.pk])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@role_required(READERS)
@require_safe
@vary_on_headers("HX-Request")
def export_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """An export's page; its status fragment polls itself every second until the job has finished."""
    export = get_object_or_404(Export.objects.select_related("created_by"), pk=pk)
    spec = _list_for(request, export.list_name)
    template = fragment_or_page(request, "exports/detail.html", "status")
    context = {"export": export, "spec": spec}
    if "#" not in template:  # the whole page: the filters as the list labels them
        context["filters"] = _filters_shown(spec, export.filters)
    return render(request, template, context)


def _filters_shown(spec: ExportList, submitted: dict[str, str]) -> list[tuple[str, str]]:
    form = spec.form(submitted)
    shown = []
    for name, value in describe_filters(form.filters()).items():
        field = form.fields[name]
        if isinstance(field, forms.ChoiceField) and not isinstance(field, forms.ModelChoiceField):
            value = str(dict(field.choices).get(value, value))
        shown.append((field.label or pretty_name(name), value))
    return shown


@role_required(READERS)
@require_safe
def export_download(request: HttpRequest, pk: int) -> FileResponse:
    """The finished file, streamed from storage; every download is audited."""
    export = get_object_or_404(Export, pk=pk)
    _list_for(request, export.list_name)
    if not export.downloadable:
        raise Http404("This export has no file to download: it has not finished, it failed or it expired.")
    try:
        file = export_storage().open(export.file_name, "rb")
    except FileNotFoundError:
        raise Http404("The export's file is missing from storage.") from None
    with transaction.atomic(durable=True):
        record(
            EventType.EXPORT_DOWNLOADED,
            actor=request.user,
            ip=client_ip(request),
            target=export,
            extra={"list": export.list_name, "file": export.download_name, "rows": export.rows_written},
        )
    content_type = "application/gzip" if export.gzip else CONTENT_TYPES[export.format]
    return FileResponse(file, as_attachment=True, filename=export.download_name, content_type=content_type)
