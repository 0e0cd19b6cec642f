"""The inspect side (the create side is views.py): conversation list (filters, search, keyset pages), detail, its actions, export."""

from __future__ import annotations

import json
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
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_POST, require_safe
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseClientRedirect

import providers
from convadmin.accounts.roles import CREATORS, READERS, role_required
from convadmin.audit.services import client_ip
from convadmin.conversations import export, services
from convadmin.conversations.models import Conversation
from convadmin.conversations.queries import (
    ConversationFilterForm,
    conversation_page,
    filter_conversations,
    read_by_index,
    search_text,
)
from convadmin.exchanges.models import Exchange
from convadmin.lists.export import export_response
from convadmin.lists.filters import NO_MATCH
from convadmin.lists.keyset import decode_cursor
from convadmin.lists.views import fragment_or_page, render_list

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
    "credential_id",
    "created_by_id",
)
#: Characters of a stored body shown on the page; the rest is a download away.
PREVIEW_CHARS = 6000


@role_required(READERS)
@require_safe
@vary_on_headers("HX-Request")
def conversation_list(request: HttpRequest) -> HttpResponse:
    form = ConversationFilterForm(request.GET)
    filters = form.filters()
    # Plain dicts, their rows built by the ``conversation_rows`` tag: a page of 200 model instances (and
    # their credential and user) plus template filters per cell would cost more than the query itself.
    # Credential labels and usernames come from the form's choices (form.credential_labels, .usernames).
    qs = Conversation.objects.values(*LIST_FIELDS)
    unsearched = {**filters, "q": None} if filters.get("q") is not NO_MATCH else filters
    bounded = conversation_page(
        filter_conversations(qs, unsearched),
        filter_conversations(Conversation.objects.all(), unsearched),
        text=search_text(filters),
        size=form.page_size(),
        after=decode_cursor(request.GET.get("after")),
        before=decode_cursor(request.GET.get("before")),
        guard=not read_by_index(unsearched),
    )
    context = {"form": form, "page": bounded.page, "bounded": bounded, "filtered": bool(filters)}
    return render_list(request, "conversations/list.html", context)


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
    existing_id = conversation.existing_conversation_id
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
        "can_retry": not services.action_refusal(conversation, "retry"),
        "can_check": services.can_check_with_provider(conversation) and not services.busy(conversation),
        "natural_key": providers.get(conversation.provider).NATURAL_KEY,
        "can_refresh": not services.action_refusal(conversation, "refresh"),
        "busy": services.busy(conversation),
        "working": services.LABELS.get(conversation.action, "") if services.busy(conversation) else "",
        "creating": conversation.action == "create" and services.in_flight(conversation),
        "last_action": conversation.action_result,
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


def _start(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Queue ``action`` on the record; show its outcome if the job has run already, else the record
    following the job live (it polls until the job is done)."""
    conversation = _get_conversation(pk)
    try:
        services.start_action(conversation, action, acting_user=request.user, ip=client_ip(request))
    except services.ActionRefused as exc:
        return _after_action(request, conversation, error=f"{services.FAILED_PREFIX[action]}{exc}")
    conversation = _get_conversation(pk)
    if services.busy(conversation):
        if not request.htmx:
            messages.info(request, f"{services.LABELS[action]}: the outcome appears here when it is done.")
        return _after_action(request, conversation)
    result = conversation.action_result
    retried = result.get("record")
    if action == "retry" and retried:
        level = messages.success if result.get("ok") else messages.error
        if result.get("level") == "warning":
            level = messages.warning
        level(request, result.get("notice") or result.get("error", ""))
        url = reverse("conversation_detail", args=[retried])
        return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    return _after_action(
        request,
        conversation,
        notice=result.get("notice", ""),
        error=result.get("error", ""),
        differences=[tuple(line) for line in result.get("differences") or []],
    )


@role_required(CREATORS)
@require_POST
def conversation_refresh(request: HttpRequest, pk: int) -> HttpResponse:
    return _start(request, pk, "refresh")


@role_required(CREATORS)
@require_POST
def conversation_retry(request: HttpRequest, pk: int) -> HttpResponse:
    return _start(request, pk, "retry")


@role_required(CREATORS)
@require_POST
def conversation_check(request: HttpRequest, pk: int) -> HttpResponse:
    return _start(request, pk, "check")
