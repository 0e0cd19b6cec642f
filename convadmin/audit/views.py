"""The audit log page (filters, keyset pages) and its streamed export. Read-only: nothing edits or deletes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe
from django.views.decorators.vary import vary_on_headers

from convadmin.accounts.roles import AUDITORS, role_required
from convadmin.audit.models import AuditEvent, EventType
from convadmin.audit.services import client_ip, record
from convadmin.lists.export import EXPORT_BATCH, ExportList, dict_rows, export_response
from convadmin.lists.filters import (
    NO_MATCH,
    FilterForm,
    QuickSelect,
    date_input,
    date_range,
    page_size_field,
    plain_choices,
)
from convadmin.lists.views import render_list, requested_page

TARGET_TYPES = [("user", "User"), ("credential", "Credential"), ("conversation", "Conversation")]
EVENT_COLUMNS = {
    "event_time": "event_time",
    "id": "id",
    "event_type": "event_type",
    "actor": "actor_name",
    "ip": "ip",
    "target_type": "target_type",
    "target_id": "target_id",
    "target_label": "target_label",
    "extra": "extra",
}
EVENT_FIELDS = tuple(EVENT_COLUMNS)


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if value == "":
        return "(empty)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        if value and set(value) <= {"old", "new"}:
            return f"{_text(value.get('old'))} → {_text(value.get('new'))}"
        return ", ".join(f"{k}: {_text(v)}" for k, v in value.items()) or "(none)"
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or "(none)"
    return str(value)


def readable_changes(extra: Any) -> list[tuple[str, str]]:
    """An event's ``extra`` (or a refresh's differences) as ``(name, text)`` pairs, ``old → new`` for a
    change."""
    if isinstance(extra, dict):
        return [(str(key), _text(value)) for key, value in extra.items()]
    return [("", _text(extra))] if extra not in (None, "", [], {}) else []


class AuditFilterForm(FilterForm):
    event_type = forms.ChoiceField(
        label="Event", choices=[("", "Any event"), *EventType.choices], required=False, widget=QuickSelect
    )
    actor = forms.ModelChoiceField(
        get_user_model().objects.only("id", "username").order_by("username"),
        required=False,
        empty_label="Anyone",
        to_field_name="username",
        widget=QuickSelect,
    )
    target_type = forms.ChoiceField(
        label="Target", choices=[("", "Any target"), *TARGET_TYPES], required=False, widget=QuickSelect
    )
    target_id = forms.CharField(
        label="Target id",
        required=False,
        max_length=64,
        error_messages={
            "max_length": "A target id is at most %(limit_value)d characters (this one has %(show_value)d): "
            "no event can match."
        },
    )
    since = forms.DateField(label="From", required=False, widget=date_input())
    until = forms.DateField(label="To", required=False, widget=date_input())
    size = page_size_field()

    FILTERS = ("event_type", "actor", "target_type", "target_id", "since", "until")
    SEARCHES = ("target_id",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        plain_choices(
            self.fields["actor"],
            get_user_model().objects.order_by("username").values_list("username", "username"),
            "Anyone",
        )


def filter_events(qs, filters: dict[str, Any]):
    if filters.get("target_id") is NO_MATCH:
        return qs.none()
    if filters.get("event_type"):
        qs = qs.filter(event_type=filters["event_type"])
    if filters.get("actor"):
        qs = qs.filter(actor=filters["actor"])
    if filters.get("target_type"):
        qs = qs.filter(target_type=filters["target_type"])
    if filters.get("target_id"):
        qs = qs.filter(target_id=filters["target_id"].strip())
    return qs.filter(date_range("event_time", filters.get("since"), filters.get("until")))


@role_required(AUDITORS)
@require_safe
@vary_on_headers("HX-Request")
def audit_log(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET)
    filters = form.filters()
    events = filter_events(AuditEvent.objects.all(), filters)
    page = requested_page(request, events, field="event_time", size=form.page_size())
    for event in page.rows:
        event.changes = readable_changes(event.extra)
    return render_list(request, "audit/log.html", {"form": form, "page": page, "filtered": bool(filters)})


def _event_rows(qs, fmt: str) -> Iterator[dict[str, Any]]:
    for row in dict_rows(qs, EVENT_COLUMNS, EVENT_FIELDS, field="event_time", batch=EXPORT_BATCH):
        yield {**row, "extra": json.dumps(row["extra"], ensure_ascii=False)} if fmt == "csv" else row


#: What the audit log exports (registered in AuditConfig.ready): its streamed export and export jobs.
AUDIT_EXPORT = ExportList(
    name="audit",
    label="Audit log",
    roles=AUDITORS,
    form=AuditFilterForm,
    queryset=lambda filters: filter_events(AuditEvent.objects.all(), filters),
    rows=_event_rows,
    header=EVENT_FIELDS,
    audit=lambda request, details: record(
        EventType.AUDIT_EXPORTED, actor=request.user, ip=client_ip(request), extra=details
    ),
    list_url="audit",
)


@role_required(AUDITORS)
@require_safe
def audit_export(request: HttpRequest) -> HttpResponse:
    """The filtered audit log as CSV or JSONL: streamed when small, else a page that starts an export job.
    The export is itself an audit event."""
    return export_response(request, AUDIT_EXPORT)
