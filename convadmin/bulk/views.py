"""Bulk create pages: upload (with the provider templates), a batch's report, progress and results."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST, require_safe

import providers
from convadmin.accounts.roles import CREATORS, role_required
from convadmin.audit.services import client_ip
from convadmin.bulk import rows as bulk_rows
from convadmin.bulk import services
from convadmin.bulk.models import Batch, RowStatus, State
from convadmin.credentials.models import Credential
from convadmin.drafts.models import ConversationTemplate
from convadmin.drafts.services import usable_templates
from convadmin.lists.export import csv_lines
from convadmin.lists.views import fragment_or_page

TEMPLATE = "bulk/batch.html"
ROWS_PER_PAGE = 100


class UploadForm(forms.Form):
    credential = forms.ModelChoiceField(
        Credential.objects.filter(disabled=False).order_by("provider", "label"),
        empty_label="Choose a credential",
        help_text="The file must be in the template of this credential's provider.",
    )
    file = forms.FileField(
        allow_empty_file=True,  # the bulk reader says what an empty file means
        help_text=f"CSV (UTF-8) or Excel .xlsx; at most {bulk_rows.MAX_BYTES // 1048576} MB and "
        f"{bulk_rows.MAX_ROWS:,} rows.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.xlsx,text/csv"}),
    )
    template = forms.ModelChoiceField(
        ConversationTemplate.objects.none(),
        required=False,
        empty_label="No template",
        label="Template (optional)",
        help_text="A saved template of the credential's provider: its values fill the cells a row leaves blank, "
        "its participants a row that gives none. A value in the file always wins.",
        error_messages={
            "invalid_choice": "Choose one of the listed templates: this one does not exist or is another "
            "user's private template."
        },
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["credential"].label_from_instance = lambda c: f"{c.label} ({c.provider_label})"
        self.fields["template"].queryset = usable_templates(user).order_by("provider", "name", "id")
        self.fields["template"].label_from_instance = lambda t: f"{t.name} ({t.provider_label})"

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        template, credential = data.get("template"), data.get("credential")
        if template and credential:
            try:
                data["defaults"] = bulk_rows.template_defaults(template, credential.provider)
            except bulk_rows.FileRefused as exc:
                self.add_error("template", str(exc))
        return data


@role_required(CREATORS)
@require_http_methods(["GET", "HEAD", "POST"])
def bulk_index(request: HttpRequest) -> HttpResponse:
    form = UploadForm(request.POST or None, request.FILES or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        credential = form.cleaned_data["credential"]
        try:
            if upload.size > bulk_rows.MAX_BYTES:
                raise bulk_rows.FileRefused(
                    f"The file is larger than {bulk_rows.MAX_BYTES // 1048576} MB, the most a bulk create takes."
                )
            report = bulk_rows.validate_file(
                upload.name, upload.read(), credential, form.cleaned_data.get("defaults")
            )
        except bulk_rows.FileRefused as exc:
            form.add_error("file", f"{exc} Nothing was sent.")
        else:
            batch = services.do_upload_batch(
                report,
                credential=credential,
                file_name=upload.name,
                acting_user=request.user,
                ip=client_ip(request),
                template=form.cleaned_data["template"],
            )
            return redirect("bulk_batch", batch.pk)
    batches = Batch.objects.select_related("credential", "created_by")[:20]
    templates = [
        (
            name,
            label,
            bulk_rows.columns(name),
            providers.get(name).MAX_PARTICIPANTS,
            bool(providers.get(name).PARTICIPANT_FIELDS),
        )
        for name, label in providers.NAMES.items()
    ]
    context = {
        "form": form,
        "batches": batches,
        "templates": templates,
        "saved": form.fields["template"].queryset,
        "json_column": bulk_rows.JSON_COLUMN,
    }
    return render(request, "bulk/index.html", context)


@role_required(CREATORS)
@require_safe
def bulk_template(request: HttpRequest, provider: str, fmt: str) -> HttpResponse:
    """The provider's template file; ``?participants=json``: participants as one JSON column;
    ``?template=ID``: a first example row with that saved template's values."""
    if provider not in providers.NAMES or fmt not in ("csv", "xlsx"):
        raise Http404("No such template.")
    defaults, source = None, request.GET.get("template", "")
    if source:
        if not (source.isascii() and source.isdigit() and len(source) < 10):
            raise Http404("No such template.")
        template = get_object_or_404(usable_templates(request.user), pk=source, provider=provider)
        defaults = bulk_rows.template_defaults(template, provider)
    as_json = request.GET.get("participants") == "json"
    data = bulk_rows.template_file(provider, fmt, as_json=as_json, defaults=defaults)
    content_type = "text/csv; charset=utf-8"
    if fmt == "xlsx":
        content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    response = HttpResponse(data, content_type=content_type)
    name = f"bulk-{provider}{'-json' if as_json else ''}{f'-template-{source}' if source else ''}"
    response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return response


def _batch(pk: int) -> Batch:
    return get_object_or_404(Batch.objects.select_related("credential", "created_by"), pk=pk)


def progress(batch: Batch) -> dict[str, Any]:
    counts = services.counts(batch)
    sent = counts[RowStatus.CREATED] + counts[RowStatus.FAILED]
    to_send = sent + counts[RowStatus.READY] + counts[RowStatus.PENDING]
    ready = counts[RowStatus.READY] + counts[RowStatus.PENDING] + sent
    problems = counts[RowStatus.INVALID] + counts[RowStatus.DUPLICATE]
    return {
        "summary": f"{ready:,} ready, {problems:,} with errors",
        "counts": counts,
        "sent": sent,
        "to_send": to_send,
        "in_flight": services.in_flight(batch),
        "rate": services.rate(batch),
        "stale": services.is_stale(batch),
        "polling": batch.status == State.RUNNING and not services.is_stale(batch),
    }


@role_required(CREATORS)
@require_safe
def bulk_batch(request: HttpRequest, pk: int) -> HttpResponse:
    batch = _batch(pk)
    status = request.GET.get("status", "")
    rows = batch.rows.select_related("conversation").order_by("number")
    if status in RowStatus.values:
        rows = rows.filter(status=status)
    page = Paginator(rows, ROWS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "batch": batch,
        "page": page,
        "status": status,
        "statuses": RowStatus.choices,
        **progress(batch),
    }
    return render(request, fragment_or_page(request, TEMPLATE, "progress"), context)


@role_required(CREATORS)
@require_POST
def bulk_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    batch = _batch(pk)
    do = {
        "start": services.do_start_batch,
        "pause": services.do_pause_batch,
        "resume": services.do_resume_batch,
        "cancel": services.do_cancel_batch,
        "retry": services.do_retry_failed,
    }.get(action)
    if do is None:
        raise Http404("No such action.")
    try:
        do(batch, acting_user=request.user, ip=client_ip(request))
    except services.BatchRefused as exc:
        messages.error(request, str(exc))
    return redirect("bulk_batch", batch.pk)


HEADER = ["row", "status", "column", "field", "message", "value", "record", "external_id", "provider_error"]


@role_required(CREATORS)
@require_safe
def bulk_export(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    """Every row (one line per problem) with its outcome; cells a spreadsheet would run are quoted."""
    batch = _batch(pk)

    def lines() -> Any:
        for row in batch.rows.select_related("conversation").order_by("number").iterator(chunk_size=1000):
            record = row.conversation
            outcome = {
                "row": row.number,
                "status": row.status,
                "record": record.pk if record else "",
                "external_id": record.external_id if record else "",
                "provider_error": record.error_message if record else "",
            }
            for error in row.errors or [{}]:
                yield {
                    **outcome,
                    "column": error.get("column", ""),
                    "field": error.get("label", ""),
                    "message": error.get("message", ""),
                    "value": error.get("value", ""),
                }

    response = StreamingHttpResponse(csv_lines(lines(), HEADER), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="batch-{batch.pk}-report.csv"'
    return response
