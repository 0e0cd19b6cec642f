"""The conversation list's rows and participant chips, built in Python (``{% conversation_rows page.rows %}``).

Django's template engine needs ~15 ms for 100 rows of these 8 cells, this under 1 ms: most of a page's time
otherwise (the admin changelist builds its cells in Python too; see bench/results.md). Every value goes
through :func:`convadmin.lists.filters.escape` (Django's escaping); addresses come from :func:`~django.urls.reverse`.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

import providers
from convadmin.conversations.models import Status
from convadmin.lists.filters import escape

register = template.Library()

STATUS_LABELS = dict(Status.choices)
SHOWN_PARTICIPANTS = 3
#: Chips longer than this show their start and end (UUIDs of one app often share their first characters).
CHIP_CHARS = 24


def chip_text(value: str) -> str:
    """A participant as its chip shows it: a long id keeps its start and its end, since ids that share a
    prefix (Mixin user UUIDs, say) differ at the end; the whole value is the chip's tooltip."""
    if len(value) <= CHIP_CHARS:
        return value
    return f"{value[:8]}…{value[-8:]}"


def chip(value: Any) -> str:
    """One participant as a chip (:func:`chip_text`), the whole value in its tooltip."""
    text = str(value)
    return f'<span class="chip" title="{escape(text)}">{escape(chip_text(text))}</span> '


def _detail_url() -> str:
    """The detail page's address with ``{}`` for the record's id: one ``reverse`` per page, not per row."""
    return reverse("conversation_detail", args=[0]).replace("/0/", "/{}/")


@register.simple_tag
def conversation_rows(
    rows: list[dict[str, Any]], credentials: dict[int, str], users: dict[int, str]
) -> SafeString:
    """The list's table rows from ``Conversation.objects.values(*LIST_FIELDS)`` dicts, with credential labels
    and usernames by id."""
    detail = _detail_url()
    labels = providers.NAMES
    zone = timezone.get_current_timezone()  # once, not per row
    out = []
    for row in rows:
        people = "".join(chip(p) for p in row["participants"][:SHOWN_PARTICIPANTS])
        more = row["participant_count"] - SHOWN_PARTICIPANTS
        if more > 0:
            people += f'<span class="muted">+{more} more</span>'
        status = (
            f'<span class="status status-{escape(row["status"])}">'
            f"{escape(STATUS_LABELS.get(row['status'], row['status']))}</span>"
        )
        if row["outcome_unknown"]:
            status += ' <span class="status status-unknown">outcome unknown</span>'
        external = (
            f"<code>{escape(row['external_id'])}</code>"
            if row["external_id"]
            else '<span class="muted">—</span>'
        )
        created = row["created_at"]
        title = providers.record_title(row["provider"], row["name"], row["participants"], row["external_id"])
        # data-label: the column's name, shown beside each cell when a narrow screen stacks the row
        out.append(
            f'<tr><td data-label="Provider">{escape(labels.get(row["provider"], row["provider"]))}</td>'
            f'<td class="cut" data-label="Name / topic"><a href="{detail.format(int(row["id"]))}">'
            f"{escape(title or '(no name)')}</a>"
            f' <span class="muted">#{row["id"]}</span></td>'
            f'<td data-label="Participants">{people or '<span class="muted">none</span>'}</td>'
            f'<td data-label="Status">{status}</td>'
            f'<td class="cut" data-label="External id">{external}</td>'
            f'<td data-label="Credential">{escape(credentials.get(row["credential_id"], ""))}</td>'
            f'<td data-label="Created by">{escape(users.get(row["created_by_id"], ""))}</td>'
            f'<td data-label="Created at"><time datetime="{created.isoformat()}">'
            f"{created.astimezone(zone):%Y-%m-%d %H:%M:%S}</time></td></tr>"
        )
    return mark_safe("".join(out))  # noqa: S308 - every value above is escaped
