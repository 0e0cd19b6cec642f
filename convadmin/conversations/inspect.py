"""The inspect side: conversation list (filters, search, keyset pages), detail, its actions, export."""

from __future__ import annotations

import json
from html import escape
from typing import Any
from urllib.parse import parse_qsl

from django.contrib import messages
from django.db.models.functions import Left, Length
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_POST, require_safe
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseClientRedirect

import providers
from convadmin.accounts.roles import CREATORS, READERS, role_required
from convadmin.audit.services import client_ip
from convadmin.conversations import export, services
from convadmin.conversations.models import Conversation, Status, record_title
from convadmin.conversations.queries import ConversationFilterForm, filter_conversations
from convadmin.exchanges.models import Exchange
from convadmin.lists.export import export_response
from convadmin.lists.keyset import decode_cursor, keyset_page
from convadmin.lists.views import fragment_or_page, render_list
from providers import NAMES as PROVIDER_LABELS
from providers.base import ProviderError

LIST_FIELDS = (
    "id",
    "provider",
    "name",
    "participants",
    "participant_count",
    "status",
    "outcome_unknown",
    "external_id",
    "created_at",
    "credential__label",
    "created_by__username",
)
STATUS_LABELS = dict(Status.choices)
SHOWN_PARTICIPANTS = 3
CHIP_CHARS = 24  # longer values show their first and last 8 characters
#: Characters of a stored body shown on the page; the rest is a download away.
PREVIEW_CHARS = 6000


@role_required(READERS)
@require_safe
@vary_on_headers("HX-Request")
def conversation_list(request: HttpRequest) -> HttpResponse:
    form = ConversationFilterForm(request.GET)
    filters = form.filters()
    # Plain dicts with the cells ready: a page of 200 model instances (and their credential and user)
    # plus template filters per cell would cost more than the query itself.
    qs = Conversation.objects.values(*LIST_FIELDS)
    page = keyset_page(
        filter_conversations(qs, filters),
        field="created_at",
        size=form.page_size(),
        after=decode_cursor(request.GET.get("after")),
        before=decode_cursor(request.GET.get("before")),
    )
    context = {"form": form, "page": page, "filtered": bool(filters), "rows_html": rows_html(page.rows)}
    return render_list(request, "conversations/list.html", context)


def chip_text(value: str) -> str:
    """A participant as its chip shows it: a long id keeps its start and its end, since ids that share a
    prefix (Mixin user UUIDs, say) differ at the end; the whole value is the chip's tooltip."""
    if len(value) <= CHIP_CHARS:
        return value
    return f"{value[:8]}…{value[-8:]}"


def rows_html(rows: list[dict[str, Any]]) -> SafeString:
    """The list's table rows, built here rather than in the template.

    Django's template engine needs ~15 ms for 100 rows of these 8 cells, this under 1 ms: most of a page's
    time otherwise (the admin changelist builds its cells in Python too; see bench/results.md). Every
    value is escaped.
    """
    base = reverse("conversations")
    out = []
    for row in rows:
        people = "".join(chip(p) for p in row["participants"][:SHOWN_PARTICIPANTS])
        more = row["participant_count"] - SHOWN_PARTICIPANTS
        if more > 0:
            people += f'<span class="muted">+{more} more</span>'
        status = f'<span class="status status-{escape(row["status"])}">{escape(STATUS_LABELS.get(row["status"], row["status"]))}</span>'
        if row["outcome_unknown"]:
            status += ' <span class="status status-unknown">outcome unknown</span>'
        external = (
            f"<code>{escape(row['external_id'])}</code>"
            if row["external_id"]
            else '<span class="muted">—</span>'
        )
        created = row["created_at"]
        title = record_title(row["name"], row["provider"], row["participants"], row["external_id"])
        # data-label: the column's name, shown beside each cell when a narrow screen stacks the row
        out.append(
            f'<tr><td data-label="Provider">{escape(PROVIDER_LABELS.get(row["provider"], row["provider"]))}</td>'
            f'<td class="cut" data-label="Name / topic"><a href="{base}{row["id"]}/">{escape(title or "(no name)")}</a>'
            f' <span class="muted">#{row["id"]}</span></td>'
            f'<td data-label="Participants">{people or '<span class="muted">none</span>'}</td>'
            f'<td data-label="Status">{status}</td>'
            f'<td class="cut" data-label="External id">{external}</td>'
            f'<td data-label="Credential">{escape(row["credential__label"])}</td>'
            f'<td data-label="Created by">{escape(row["created_by__username"])}</td>'
            f'<td data-label="Created at"><time datetime="{created.isoformat()}">'
            f"{timezone.localtime(created):%Y-%m-%d %H:%M:%S}</time></td></tr>"
        )
    return mark_safe("".join(out))  # noqa: S308 - every value above is escaped


#: Chips longer than this show their start and end (UUIDs of one app often share their first characters).
def chip(value: Any) -> str:
    """One participant as a chip (:func:`chip_text`), the whole value in its tooltip."""
    text = str(value)
    return f'<span class="chip" title="{escape(text)}">{escape(chip_text(text))}</span> '


@role_required(READERS)
@require_safe
def conversation_export(request: HttpRequest) -> HttpResponse:
    """The filtered list as CSV or JSONL: streamed when small, else a page that starts an export job; the
    export itself is audited with its filters."""
    return export_response(request, export.CONVERSATIONS_EXPORT)


# Detail -------------------------------------------------------------------------------------------


def _pretty(text: str, content_type: str) -> tuple[str, bool]:
    """``text`` pretty-printed when it is whole JSON or a form body; ``(text, formatted?)``."""
    if not text:
        return "", False
    if "json" in content_type or text.lstrip()[:1] in ("{", "["):
        try:
            return json.dumps(json.loads(text), indent=2, ensure_ascii=False), True
        except ValueError:
            return text, False
    if "x-www-form-urlencoded" in content_type:
        pairs = parse_qsl(text, keep_blank_values=True)
        if pairs:
            return "\n".join(f"{k} = {v}" for k, v in pairs), True
    return text, False


def _side(head: str, length: int, size: int, headers: dict[str, str]) -> dict[str, Any]:
    cut = length > len(head)
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    text, formatted = (head, False) if cut else _pretty(head, content_type)
    return {
        "text": text,
        "formatted": formatted,
        "cut": cut,
        "length": length,
        "size": size,
        "headers": "\n".join(f"{k}: {v}" for k, v in headers.items()),
    }


def _exchanges(conversation: Conversation) -> list[Exchange]:
    rows = list(
        conversation.exchanges.defer("request_body", "response_body").annotate(
            request_head=Left("request_body", PREVIEW_CHARS),
            request_length=Length("request_body"),
            response_head=Left("response_body", PREVIEW_CHARS),
            response_length=Length("response_body"),
        )
    )
    for ex in rows:
        ex.request_view = _side(
            ex.request_head or "", ex.request_length or 0, ex.request_size, ex.request_headers
        )
        ex.response_view = _side(
            ex.response_head or "", ex.response_length or 0, ex.response_size, ex.response_headers
        )
    return rows


def _detail_context(conversation: Conversation) -> dict[str, Any]:
    response = conversation.response_body if isinstance(conversation.response_body, dict) else {}
    existing_id = response.get("existing_conversation_id") or ""
    existing_local = None
    if existing_id:
        existing_local = (
            Conversation.objects.filter(provider=conversation.provider, external_id=existing_id)
            .exclude(pk=conversation.pk)
            .only("id")
            .first()
        )
    return {
        "conversation": conversation,
        "retries": list(conversation.retries.only("id", "status", "created_at", "external_id")),
        "exchanges": _exchanges(conversation),
        "request_json": json.dumps(conversation.request_body, indent=2, ensure_ascii=False),
        "provider_participants_json": json.dumps(
            conversation.provider_participants, indent=2, ensure_ascii=False
        ),
        "response_json": json.dumps(response, indent=2, ensure_ascii=False) if response else "",
        "existing_id": existing_id,
        "existing_local": existing_local,
        "advice": services.failure_advice(conversation),
        "unknown_reason": services.unknown_reason(conversation),
        "can_retry": conversation.status == Status.FAILED
        and not (services.may_exist(conversation) and services.natural_key(conversation) is None),
        "can_check": services.can_check_with_provider(conversation),
        "natural_key": providers.get(conversation.provider).NATURAL_KEY,
        "can_refresh": conversation.status == Status.CREATED and bool(conversation.external_id),
    }


def _get_conversation(pk: int) -> Conversation:
    return get_object_or_404(
        Conversation.objects.select_related("credential", "created_by", "retry_of"), pk=pk
    )


@role_required(READERS)
@require_safe
@vary_on_headers("HX-Request")
def conversation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    context = _detail_context(_get_conversation(pk))
    return render(request, fragment_or_page(request, "conversations/detail.html", "record"), context)


@role_required(READERS)
@require_safe
def exchange_body(request: HttpRequest, pk: int, exchange_id: int, part: str) -> HttpResponse:
    """The stored (redacted) request or response body of one exchange, whole, as a text download."""
    if part not in ("request", "response"):
        raise Http404("No such part.")
    field = f"{part}_body"
    exchange = get_object_or_404(Exchange.objects.only("id", field), pk=exchange_id, conversation_id=pk)
    response = HttpResponse(getattr(exchange, field), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = content_disposition_header(
        True, f"conversation-{pk}-exchange-{exchange_id}-{part}.txt"
    )
    return response


def refresh_summary(result: dict[str, Any], paths: tuple[str, ...]) -> list[tuple[str, str]]:
    """What a refresh found, as ``(name, text)`` lines: participants (identified by ``paths``) added, removed,
    changed field by field."""
    lines = []
    if result.get("added"):
        lines.append(("Added", ", ".join(services.participant_key(p, paths) for p in result["added"])))
    if result.get("removed"):
        lines.append(("Removed", ", ".join(services.participant_key(p, paths) for p in result["removed"])))
    for change in result.get("changed") or []:
        fields = "; ".join(
            f"{name}: {_plain(v.get('before'))} → {_plain(v.get('after'))}"
            for name, v in change["fields"].items()
        )
        lines.append((f"Changed {change['participant']}", fields))
    return lines


def _plain(value: Any) -> str:
    return (
        "—" if value is None else value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    )


def _after_action(
    request: HttpRequest,
    conversation: Conversation,
    *,
    notice: str = "",
    error: str = "",
    differences: list[tuple[str, str]] | None = None,
) -> HttpResponse:
    """htmx: the record re-rendered with the outcome on top; without JS: a message and the page."""
    if request.htmx:
        context = _detail_context(_get_conversation(conversation.pk))
        context.update(notice=notice, action_error=error, differences=differences)
        return render(request, "conversations/detail.html#record", context)
    if error:
        messages.error(request, error)
    elif notice:
        messages.success(request, notice)
    for name, text in differences or []:
        messages.info(request, f"{name}: {text}")
    return redirect("conversation_detail", pk=conversation.pk)


#: What the services raise when an action does not apply or the provider cannot answer.
ACTION_ERRORS = (services.ActionRefused, services.CallFailed, services.ValidationFailed, ProviderError)


@role_required(CREATORS)
@require_POST
def conversation_refresh(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = _get_conversation(pk)
    try:
        result = services.do_refresh_conversation(
            conversation, acting_user=request.user, ip=client_ip(request)
        )
    except ACTION_ERRORS as exc:
        return _after_action(request, conversation, error=str(exc))
    differences = refresh_summary(result, providers.get(conversation.provider).PARTICIPANT_IDENTITY)
    count = len(result.get("current") or [])
    notice = f"Refreshed from the provider: {count} participant{'s' if count != 1 else ''}" + (
        ", with the changes below." if differences else "; nothing changed since the last read."
    )
    return _after_action(request, conversation, notice=notice, differences=differences)


@role_required(CREATORS)
@require_POST
def conversation_retry(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = _get_conversation(pk)
    try:
        result = services.do_retry_conversation(conversation, acting_user=request.user, ip=client_ip(request))
    except ACTION_ERRORS as exc:
        return _after_action(request, conversation, error=f"Not retried: {exc}")
    if result.pk == conversation.pk:
        return _after_action(
            request,
            conversation,
            notice="The provider already had this conversation (found by its natural key): this record is now "
            f"{result.get_status_display().lower()} and nothing was sent again.",
        )
    url = reverse("conversation_detail", args=[result.pk])
    if result.status == Status.CREATED:
        messages.success(request, f"Retried as record {result.pk} (retry of {conversation.pk}): created.")
    elif result.status == Status.FAILED:
        messages.error(
            request,
            f"The retry failed too: record {result.pk} (retry of {conversation.pk}) was not created. "
            "Its error is below.",
        )
    else:
        messages.warning(
            request, f"Retried as record {result.pk} (retry of {conversation.pk}): still pending."
        )
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@role_required(CREATORS)
@require_POST
def conversation_check(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = _get_conversation(pk)
    try:
        result = services.do_check_with_provider(
            conversation, acting_user=request.user, ip=client_ip(request)
        )
    except ACTION_ERRORS as exc:
        return _after_action(request, conversation, error=f"Not checked: {exc}")
    if result.status == Status.CREATED:
        notice = f"Checked with the provider: it has this conversation ({result.external_id}); the record is now created."
    else:
        notice = "Checked with the provider: it does not have this conversation. Nothing was created; you can retry."
    return _after_action(request, result, notice=notice)
