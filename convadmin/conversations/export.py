"""The conversation export's columns (web and ``export_conversations``); the streaming is convadmin.lists.export.

No secret is ever exported: credentials appear by label only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import QuerySet

from convadmin.lists.export import dict_rows

#: Exported name → the column it comes from.
CONVERSATION_COLUMNS = {
    "created_at": "created_at",
    "id": "id",
    "provider": "provider",
    "credential": "credential__label",
    "status": "status",
    "external_id": "external_id",
    "name": "name",
    "participants": "participants",
    "participant_count": "participant_count",
    "created_by": "created_by__username",
    "completed_at": "completed_at",
    "error_code": "error_code",
    "error_status": "error_status",
    "error_message": "error_message",
    "outcome_unknown": "outcome_unknown",
    "retry_of": "retry_of_id",
}
CONVERSATION_FIELDS = (
    "id",
    "provider",
    "credential",
    "status",
    "external_id",
    "name",
    "participants",
    "participant_count",
    "created_by",
    "created_at",
    "completed_at",
    "error_code",
    "error_status",
    "error_message",
    "outcome_unknown",
    "retry_of",
)


def conversation_rows(qs: QuerySet, *, batch: int = 2000) -> Iterator[dict[str, Any]]:
    return dict_rows(qs, CONVERSATION_COLUMNS, CONVERSATION_FIELDS, field="created_at", batch=batch)
