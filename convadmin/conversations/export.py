"""The conversation export's columns (web and ``export_conversations``); the streaming is convadmin.lists.export.

No secret is ever exported: credentials appear by label only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import QuerySet

from convadmin.accounts.roles import READERS
from convadmin.audit.models import EventType
from convadmin.audit.services import client_ip, record
from convadmin.conversations.models import Conversation
from convadmin.conversations.queries import ConversationFilterForm, filter_conversations
from convadmin.lists.export import EXPORT_BATCH, ExportList, dict_rows

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


def conversation_rows(qs: QuerySet, *, batch: int = EXPORT_BATCH) -> Iterator[dict[str, Any]]:
    return dict_rows(qs, CONVERSATION_COLUMNS, CONVERSATION_FIELDS, field="created_at", batch=batch)


#: What the conversation list exports (registered in ConversationsConfig.ready): the list's streamed export
#: and export jobs.
CONVERSATIONS_EXPORT = ExportList(
    name="conversations",
    label="Conversations",
    roles=READERS,
    form=ConversationFilterForm,
    queryset=lambda filters: filter_conversations(Conversation.objects.all(), filters),
    rows=lambda qs, fmt: conversation_rows(qs),
    header=CONVERSATION_FIELDS,
    audit=lambda request, details: record(
        EventType.CONVERSATIONS_EXPORTED, actor=request.user, ip=client_ip(request), extra=details
    ),
    list_url="conversations",
    columns=CONVERSATION_COLUMNS,
    field="created_at",
)
